#!/usr/bin/env python3
"""Generates kernels_amd64.s: AVX2 and AVX-512 reduction kernels.

    python3 kernels_amd64_gen.py > kernels_amd64.s

Every kernel has the Go signature func(d, s *byte, n int) and computes
d[i] = d[i] op s[i] for i < n elements. AVX-512 kernels handle every n
(masked tail, no access outside the n elements); AVX2 kernels require n to be
a multiple of their block (kernels_amd64.go reduces the rest in Go). The
semantics follow the generic kernels bit for bit; see kernels_amd64.go.
"""

out = []


def emit(s=""):
    out.append(s)


# ---------------------------------------------------------------- numeric ops
# An op gets (x, y, t, c): x = dst vector, y = src vector (may be clobbered),
# t = temporaries, c = constants; it returns (instructions, result register).

def simple(ins):
    return lambda x, y, t, c: ([f"{ins} {y}, {x}, {x}"], x)


def fmin(ps, por):
    # Go lowers min(x, y) on amd64 to
    #   t1 = MINS(x, y); t2 = MINS(t1, x); r = t1 | t2
    # (Intel MIN: src1 < src2 ? src1 : src2, else src2). Repeat it per lane.
    def f(x, y, t, c):
        return [f"VMIN{ps} {y}, {x}, {t[0]}", f"VMIN{ps} {x}, {t[0]}, {y}", f"{por} {y}, {t[0]}, {x}"], x
    return f


def fmax512(ps, tern):
    # max(x, y) is lowered to -min(-x, -y), which per lane is
    #   t1 = MAX(x, y); t2 = MAX(t1, x); r = -((-t1) | (-t2)):
    # magnitude bits t1|t2, sign bit t1&t2. One VPTERNLOG (0xD4 with C = sign mask).
    def f(x, y, t, c):
        return [f"VMAX{ps} {y}, {x}, {t[0]}", f"VMAX{ps} {x}, {t[0]}, {y}",
                f"{tern} $0xD4, {c['S']}, {y}, {t[0]}"], t[0]
    return f


def fmax256(ps, xor, orr):
    def f(x, y, t, c):
        S = c['S']
        return [f"VMAX{ps} {y}, {x}, {t[0]}", f"VMAX{ps} {x}, {t[0]}, {y}",
                f"{xor} {S}, {t[0]}, {t[0]}", f"{xor} {S}, {y}, {y}",
                f"{orr} {y}, {t[0]}, {t[0]}", f"{xor} {S}, {t[0]}, {x}"], x
    return f


def mul64_avx2(x, y, t, c):
    # (xh*2^32 + xl)(yh*2^32 + yl) mod 2^64 = xl*yl + ((xh*yl + xl*yh) << 32)
    T, U = t[0], t[1]
    return [f"VPSRLQ $32, {y}, {T}", f"VPMULUDQ {x}, {T}, {T}",
            f"VPSRLQ $32, {x}, {U}", f"VPMULUDQ {y}, {U}, {U}",
            f"VPADDQ {U}, {T}, {T}", f"VPSLLQ $32, {T}, {T}",
            f"VPMULUDQ {y}, {x}, {x}", f"VPADDQ {T}, {x}, {x}"], x


def min64_avx2(x, y, t, c):
    return [f"VPCMPGTQ {y}, {x}, {t[0]}", f"VPBLENDVB {t[0]}, {y}, {x}, {x}"], x


def max64_avx2(x, y, t, c):
    return [f"VPCMPGTQ {y}, {x}, {t[0]}", f"VPBLENDVB {t[0]}, {x}, {y}, {x}"], x


SIGN32 = ("MOVL $0x80000000, AX", "D")
SIGN64 = ("MOVQ $0x8000000000000000, AX", "Q")

# (type name, log2 size, masked-move suffix, {op: (avx512 op, avx2 op, temps, sign const)})
NUMERIC = [
    ("F32", 2, "32", {
        "Sum": (simple("VADDPS"), simple("VADDPS"), 0, None),
        "Prod": (simple("VMULPS"), simple("VMULPS"), 0, None),
        "Min": (fmin("PS", "VORPS"), fmin("PS", "VORPS"), 1, None),
        "Max": (fmax512("PS", "VPTERNLOGD"), fmax256("PS", "VXORPS", "VORPS"), 1, SIGN32),
    }),
    ("F64", 3, "64", {
        "Sum": (simple("VADDPD"), simple("VADDPD"), 0, None),
        "Prod": (simple("VMULPD"), simple("VMULPD"), 0, None),
        "Min": (fmin("PD", "VORPD"), fmin("PD", "VORPD"), 1, None),
        "Max": (fmax512("PD", "VPTERNLOGQ"), fmax256("PD", "VXORPD", "VORPD"), 1, SIGN64),
    }),
    ("I32", 2, "32", {
        "Sum": (simple("VPADDD"), simple("VPADDD"), 0, None),
        "Prod": (simple("VPMULLD"), simple("VPMULLD"), 0, None),
        "Min": (simple("VPMINSD"), simple("VPMINSD"), 0, None),
        "Max": (simple("VPMAXSD"), simple("VPMAXSD"), 0, None),
    }),
    ("I64", 3, "64", {
        "Sum": (simple("VPADDQ"), simple("VPADDQ"), 0, None),
        "Prod": (simple("VPMULLQ"), mul64_avx2, 2, None),
        "Min": (simple("VPMINSQ"), min64_avx2, 1, None),
        "Max": (simple("VPMAXSQ"), max64_avx2, 1, None),
    }),
    ("U8", 0, "8", {
        "Sum": (simple("VPADDB"), simple("VPADDB"), 0, None),
        "Min": (simple("VPMINUB"), simple("VPMINUB"), 0, None),
        "Max": (simple("VPMAXUB"), simple("VPMAXUB"), 0, None),
    }),
]


def header(name):
    emit(f"// func {name}(d, s *byte, n int)")
    emit(f"TEXT ·{name}(SB), NOSPLIT, $0-24")
    emit("\tMOVQ d+0(FP), DI")
    emit("\tMOVQ s+8(FP), SI")
    emit("\tMOVQ n+16(FP), CX")


def numeric(path, tname, lg, msz, op, spec):
    is512 = path == "AVX512"
    fn, tmps, sign = (spec[0], spec[2], spec[3]) if is512 else (spec[1], spec[2], spec[3])
    R = "Z" if is512 else "Y"
    VB = 64 if is512 else 32
    U = 4
    name = f"k{path}{tname}{op}"
    header(name)
    emit(f"\tSHLQ ${lg}, CX") if lg else None
    c = {}
    if sign:
        emit("\t" + sign[0])
        if is512:
            emit(f"\tVPBROADCAST{sign[1]} AX, Z31")
            c["S"] = "Z31"
        else:
            emit(f"\tVMOVQ AX, X15")
            emit(f"\tVPBROADCAST{sign[1]} X15, Y15")
            c["S"] = "Y15"
    mov = "VMOVDQU64" if is512 else "VMOVDQU"

    def body(u):
        xs = [f"{R}{i}" for i in range(u)]
        ys = [f"{R}{4 + i}" for i in range(u)]
        for i in range(u):
            emit(f"\t{mov} {i * VB}(DI), {xs[i]}")
            emit(f"\t{mov} {i * VB}(SI), {ys[i]}")
        res = []
        for i in range(u):
            t = [f"{R}{8 + i * 2 + k}" for k in range(tmps)]
            ins, r = fn(xs[i], ys[i], t, c)
            for s in ins:
                emit("\t" + s)
            res.append(r)
        for i in range(u):
            emit(f"\t{mov} {res[i]}, {i * VB}(DI)")

    emit("loop4:")
    emit(f"\tCMPQ CX, ${U * VB}")
    emit("\tJB loop1")
    body(U)
    emit(f"\tADDQ ${U * VB}, DI")
    emit(f"\tADDQ ${U * VB}, SI")
    emit(f"\tSUBQ ${U * VB}, CX")
    emit("\tJMP loop4")
    emit("loop1:")
    emit(f"\tCMPQ CX, ${VB}")
    emit("\tJB tail")
    body(1)
    emit(f"\tADDQ ${VB}, DI")
    emit(f"\tADDQ ${VB}, SI")
    emit(f"\tSUBQ ${VB}, CX")
    emit("\tJMP loop1")
    emit("tail:")
    if is512:
        emit("\tTESTQ CX, CX")
        emit("\tJZ done")
        if lg:
            emit(f"\tSHRQ ${lg}, CX")
        emit("\tMOVQ $1, AX")
        emit("\tSHLQ CX, AX")
        emit("\tDECQ AX")
        emit("\tKMOVQ AX, K1")
        emit(f"\tVMOVDQU{msz}.Z (DI), K1, Z0")
        emit(f"\tVMOVDQU{msz}.Z (SI), K1, Z4")
        ins, r = fn("Z0", "Z4", ["Z8", "Z9"], c)
        for s in ins:
            emit("\t" + s)
        emit(f"\tVMOVDQU{msz} {r}, K1, (DI)")
    emit("done:")
    emit("\tVZEROUPPER")
    emit("\tRET")
    emit()


# ---------------------------------------------------------------- 16-bit floats
# Widen to float32, reduce, narrow. x = Z0/Y0 (dst), y = Z1/Y1 (src).

def half_op(path, op):
    is512 = path == "AVX512"
    x, y = ("Z0", "Z1") if is512 else ("Y0", "Y1")
    R = x[0]
    t0, t1, t2 = f"{R}2", f"{R}3", f"{R}4"
    if op == "Sum":
        return [f"VADDPS {y}, {x}, {x}"], x  # first source = dst: its NaN wins
    if op == "Prod":
        return [f"VMULPS {y}, {x}, {x}"], x
    # The generic min: r = a; if y < x: b; if x == y: a|b; if y NaN: b; if x NaN: a
    # (max: >, a&b), NaNs made quiet by the narrowing. MIN(x, y) gives
    # x < y ? x : y, and y for any NaN or equal values; then patch equal
    # values and a NaN x.
    mm, bit = ("VMINPS", "VORPS") if op == "Min" else ("VMAXPS", "VANDPS")
    if is512:
        return [f"{mm} {y}, {x}, {t0}", f"VCMPPS $0, {y}, {x}, K2", f"{bit} {y}, {x}, K2, {t0}",
                f"VCMPPS $3, {x}, {x}, K3", f"VMOVAPS {x}, K3, {t0}"], t0
    return [f"{mm} {y}, {x}, {t0}", f"VCMPPS $0, {y}, {x}, {t1}", f"{bit} {y}, {x}, {t2}",
            f"VBLENDVPS {t1}, {t2}, {t0}, {t0}", f"VCMPPS $3, {x}, {x}, {t1}",
            f"VBLENDVPS {t1}, {x}, {t0}, {t0}"], t0


def bf16_consts(is512):
    cs = [("ABS", "$0x7fffffff"), ("INF", "$0x7f800000"), ("RND", "$0x7fff"), ("ONE", "$1"), ("QB", "$0x400000")]
    c = {}
    for i, (k, v) in enumerate(cs):
        emit(f"\tMOVL {v}, AX")
        if is512:
            reg = f"Z{20 + i}"
            emit(f"\tVPBROADCASTD AX, {reg}")
        else:
            reg = f"Y{10 + i}"
            emit(f"\tVMOVD AX, X{10 + i}")
            emit(f"\tVPBROADCASTD X{10 + i}, {reg}")
        c[k] = reg
    return c


def widen(dt, is512, src, dst):
    if dt == "F16":
        emit(f"\tVCVTPH2PS {src}, {dst}")
    else:
        emit(f"\tVPMOVZXWD {src}, {dst}")
        emit(f"\tVPSLLD $16, {dst}, {dst}")


def narrow(dt, is512, r, c, outreg):
    # Leaves the 16-bit results in outreg (Y for AVX-512, X for AVX2).
    if dt == "F16":
        emit(f"\tVCVTPS2PH $0, {r}, {outreg}")
        return
    R = r[0]
    t5, t6, t7 = f"{R}5", f"{R}6", f"{R}7"
    # f32ToBF16: NaN → (u>>16) | 0x40; else (u + 0x7fff + ((u>>16)&1)) >> 16.
    if is512:
        emit(f"\tVPANDD {c['ABS']}, {r}, {t5}")
        emit(f"\tVPCMPGTD {c['INF']}, {t5}, K4")
        emit(f"\tVPSRLD $16, {r}, {t6}")
        emit(f"\tVPANDD {c['ONE']}, {t6}, {t6}")
        emit(f"\tVPADDD {c['RND']}, {t6}, {t6}")
        emit(f"\tVPADDD {r}, {t6}, {t6}")
        emit(f"\tVPORD {c['QB']}, {r}, K4, {t6}")
        emit(f"\tVPSRLD $16, {t6}, {t6}")
        emit(f"\tVPMOVDW {t6}, {outreg}")
    else:
        emit(f"\tVPAND {c['ABS']}, {r}, {t5}")
        emit(f"\tVPCMPGTD {c['INF']}, {t5}, {t5}")
        emit(f"\tVPSRLD $16, {r}, {t6}")
        emit(f"\tVPAND {c['ONE']}, {t6}, {t6}")
        emit(f"\tVPADDD {c['RND']}, {t6}, {t6}")
        emit(f"\tVPADDD {r}, {t6}, {t6}")
        emit(f"\tVPOR {c['QB']}, {r}, {t7}")
        emit(f"\tVPBLENDVB {t5}, {t7}, {t6}, {t6}")
        emit(f"\tVPSRLD $16, {t6}, {t6}")
        emit(f"\tVEXTRACTI128 $1, {t6}, X7")
        emit(f"\tVPACKUSDW X7, X{t6[1:]}, {outreg}")


def half(path, dt, op):
    is512 = path == "AVX512"
    name = f"k{path}{dt}{op}"
    header(name)
    c = bf16_consts(is512) if dt == "BF16" else {}
    E = 16 if is512 else 8  # elements per step
    x, y = ("Z0", "Z1") if is512 else ("Y0", "Y1")
    h = "Y8" if is512 else "X8"
    mov = "VMOVDQU"
    emit("loop:")
    emit(f"\tCMPQ CX, ${E}")
    emit("\tJB tail")
    widen(dt, is512, "(DI)", x)
    widen(dt, is512, "(SI)", y)
    ins, r = half_op(path, op)
    for s in ins:
        emit("\t" + s)
    narrow(dt, is512, r, c, h)
    emit(f"\t{mov} {h}, (DI)")
    emit(f"\tADDQ ${2 * E}, DI")
    emit(f"\tADDQ ${2 * E}, SI")
    emit(f"\tSUBQ ${E}, CX")
    emit("\tJMP loop")
    emit("tail:")
    if is512:
        emit("\tTESTQ CX, CX")
        emit("\tJZ done")
        emit("\tMOVL $1, AX")
        emit("\tSHLL CX, AX")
        emit("\tDECL AX")
        emit("\tKMOVD AX, K1")
        emit("\tVMOVDQU16.Z (DI), K1, Y8")
        emit("\tVMOVDQU16.Z (SI), K1, Y9")
        widen(dt, is512, "Y8", x)
        widen(dt, is512, "Y9", y)
        for s in ins:
            emit("\t" + s)
        narrow(dt, is512, r, c, h)
        emit(f"\tVMOVDQU16 {h}, K1, (DI)")
    emit("done:")
    emit("\tVZEROUPPER")
    emit("\tRET")
    emit()


emit("// Code generated by kernels_amd64_gen.py; DO NOT EDIT.")
emit()
emit("//go:build amd64 && !purego")
emit()
emit('#include "textflag.h"')
emit()
for path in ("AVX512", "AVX2"):
    for tname, lg, msz, ops in NUMERIC:
        for op, spec in ops.items():
            numeric(path, tname, lg, msz, op, spec)
    for dt in ("BF16", "F16"):
        for op in ("Sum", "Prod", "Min", "Max"):
            half(path, dt, op)

print("\n".join(out))
