package collectives

import (
	"fmt"
	"unsafe"
)

// BFloat16 is a bfloat16 value (1 sign, 8 exponent, 7 mantissa bits: the
// top half of a float32), stored as its bits.
type BFloat16 uint16

// Float16 is an IEEE 754 binary16 value (1 sign, 5 exponent, 10 mantissa
// bits), stored as its bits.
type Float16 uint16

// Elem is the set of element types the collectives move and reduce.
type Elem interface {
	float32 | float64 | int32 | int64 | uint8 | BFloat16 | Float16
}

// DataType names an element type for the byte-level API.
type DataType uint8

// The element types.
const (
	Float32 DataType = iota
	Float64
	Int32
	Int64
	Uint8
	BF16
	F16
	numDataTypes
)

var dataTypeNames = [numDataTypes]string{"float32", "float64", "int32", "int64", "uint8", "bfloat16", "float16"}
var dataTypeSizes = [numDataTypes]int{4, 8, 4, 8, 1, 2, 2}

// String returns the type's name (float32, ..., bfloat16, float16).
func (t DataType) String() string {
	if t < numDataTypes {
		return dataTypeNames[t]
	}
	return fmt.Sprintf("DataType(%d)", uint8(t))
}

// Size returns the size of one element in bytes (0 for an unknown type).
func (t DataType) Size() int {
	if t < numDataTypes {
		return dataTypeSizes[t]
	}
	return 0
}

func (t DataType) valid() bool { return t < numDataTypes }

// DataTypes lists every DataType.
func DataTypes() []DataType {
	return []DataType{Float32, Float64, Int32, Int64, Uint8, BF16, F16}
}

// TypeOf returns the DataType of T.
func TypeOf[T Elem]() DataType {
	var z T
	switch any(z).(type) {
	case float32:
		return Float32
	case float64:
		return Float64
	case int32:
		return Int32
	case int64:
		return Int64
	case uint8:
		return Uint8
	case BFloat16:
		return BF16
	case Float16:
		return F16
	}
	panic("unreachable")
}

// asBytes reinterprets s as its bytes, without copying.
func asBytes[T Elem](s []T) []byte {
	if len(s) == 0 {
		if s == nil {
			return nil
		}
		return []byte{}
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(z)))
}

// asType reinterprets b (whose length is a multiple of T's size and whose
// start is suitably aligned) as a []T, without copying.
func asType[T any](b []byte) []T {
	var z T
	sz := int(unsafe.Sizeof(z))
	if len(b) < sz {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/sz)
}
