package rendezvous

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Environment variables read by DetectLauncher.
const (
	EnvRank       = "SEALRING_RANK"
	EnvWorldSize  = "SEALRING_WORLD_SIZE"
	EnvLocalRank  = "SEALRING_LOCAL_RANK"
	EnvStore      = "SEALRING_STORE"
	EnvSecretFile = "SEALRING_JOB_SECRET_FILE"
)

// Launcher names reported in LaunchInfo.Launcher.
const (
	LauncherSealring = "sealring"
	LauncherTorchrun = "torchrun"
	LauncherOpenMPI  = "openmpi"
	LauncherPMI      = "pmi"
	LauncherSlurm    = "slurm"
)

var (
	// ErrNoLauncher reports that no known launcher's variables are set.
	ErrNoLauncher = errors.New("rendezvous: no launcher detected (set SEALRING_RANK and SEALRING_WORLD_SIZE, or start under Slurm, Open MPI, MPICH/PMI or torchrun)")
	// ErrBadEnv reports a launcher variable that is missing or invalid.
	ErrBadEnv = errors.New("rendezvous: bad launcher environment")
)

// LaunchInfo is what the environment says about this process's place in
// the job.
type LaunchInfo struct {
	Launcher   string // LauncherSealring, LauncherTorchrun, ...
	Rank       int    // 0 <= Rank < WorldSize
	WorldSize  int    // >= 1
	LocalRank  int    // rank on this node; -1 if the launcher does not say
	StoreAddr  string // host:port of the store server; "" if not given
	SecretFile string // path of the job secret file; "" if not given
}

// launcherVars names one launcher's variables; "" means it has none.
type launcherVars struct {
	name                   string
	rank, size, local      string
	localAlt               string // fallback for the local rank
	masterAddr, masterPort string
}

// Detection order: our own variables override everything; then the most
// specific launcher wins, because launchers nest (torchrun under srun sets
// both RANK and SLURM_PROCID, and SLURM_PROCID is then the agent's, not the
// worker's; mpirun inside an sbatch allocation inherits SLURM_*).
var launchers = []launcherVars{
	{name: LauncherSealring, rank: EnvRank, size: EnvWorldSize, local: EnvLocalRank},
	{name: LauncherTorchrun, rank: "RANK", size: "WORLD_SIZE", local: "LOCAL_RANK", masterAddr: "MASTER_ADDR", masterPort: "MASTER_PORT"},
	{name: LauncherOpenMPI, rank: "OMPI_COMM_WORLD_RANK", size: "OMPI_COMM_WORLD_SIZE", local: "OMPI_COMM_WORLD_LOCAL_RANK"},
	{name: LauncherPMI, rank: "PMI_RANK", size: "PMI_SIZE", local: "PMI_LOCAL_RANK", localAlt: "MPI_LOCALRANKID"},
	{name: LauncherSlurm, rank: "SLURM_PROCID", size: "SLURM_NTASKS", local: "SLURM_LOCALID"},
}

// DetectLauncher works out rank, world size, local rank, store address and
// job secret file from environment variables, read through getenv (pass
// os.Getenv; tests pass a map lookup). It is pure: it reads nothing else.
//
// A launcher is detected when its rank or size variable is set; then both
// must be valid integers (0 <= rank < size), or the error names the
// variable and wraps ErrBadEnv. Launchers, in order of precedence:
//
//	sealring  SEALRING_RANK, SEALRING_WORLD_SIZE, SEALRING_LOCAL_RANK
//	torchrun  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
//	openmpi   OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK
//	pmi       PMI_RANK, PMI_SIZE, PMI_LOCAL_RANK or MPI_LOCALRANKID (MPICH Hydra)
//	slurm     SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
//
// Whatever the launcher, SEALRING_LOCAL_RANK overrides the local rank,
// SEALRING_STORE (host:port) the store address (else MASTER_ADDR and
// MASTER_PORT under torchrun), and SEALRING_JOB_SECRET_FILE gives the
// secret file. With none detected it returns ErrNoLauncher.
func DetectLauncher(getenv func(string) string) (LaunchInfo, error) {
	var info LaunchInfo
	var lv *launcherVars
	for i := range launchers {
		if getenv(launchers[i].rank) != "" || getenv(launchers[i].size) != "" {
			lv = &launchers[i]
			break
		}
	}
	if lv == nil {
		return LaunchInfo{}, ErrNoLauncher
	}
	info.Launcher = lv.name
	var err error
	if info.WorldSize, err = envInt(getenv, lv.size, true, 1); err != nil {
		return LaunchInfo{}, err
	}
	if info.Rank, err = envInt(getenv, lv.rank, true, 0); err != nil {
		return LaunchInfo{}, err
	}
	if info.Rank >= info.WorldSize {
		return LaunchInfo{}, fmt.Errorf("rendezvous: %s=%d is not below %s=%d: %w", lv.rank, info.Rank, lv.size, info.WorldSize, ErrBadEnv)
	}

	info.LocalRank = -1
	for _, name := range []string{EnvLocalRank, lv.local, lv.localAlt} {
		if name == "" || getenv(name) == "" {
			continue
		}
		if info.LocalRank, err = envInt(getenv, name, true, 0); err != nil {
			return LaunchInfo{}, err
		}
		if info.LocalRank >= info.WorldSize {
			return LaunchInfo{}, fmt.Errorf("rendezvous: %s=%d is not below the world size %d: %w", name, info.LocalRank, info.WorldSize, ErrBadEnv)
		}
		break
	}

	if addr := getenv(EnvStore); addr != "" {
		if err := checkHostPort(EnvStore, addr); err != nil {
			return LaunchInfo{}, err
		}
		info.StoreAddr = addr
	} else if lv.masterAddr != "" {
		host, port := getenv(lv.masterAddr), getenv(lv.masterPort)
		switch {
		case host == "" && port == "":
		case host == "":
			return LaunchInfo{}, fmt.Errorf("rendezvous: %s is set but %s is not: %w", lv.masterPort, lv.masterAddr, ErrBadEnv)
		case port == "":
			return LaunchInfo{}, fmt.Errorf("rendezvous: %s is set but %s is not: %w", lv.masterAddr, lv.masterPort, ErrBadEnv)
		default:
			if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
				return LaunchInfo{}, fmt.Errorf("rendezvous: %s=%q is not a port number: %w", lv.masterPort, port, ErrBadEnv)
			}
			info.StoreAddr = net.JoinHostPort(host, port)
		}
	}
	info.SecretFile = getenv(EnvSecretFile)
	return info, nil
}

// envInt parses a non-negative decimal integer >= min from variable name.
func envInt(getenv func(string) string, name string, required bool, min int) (int, error) {
	v := getenv(name)
	if v == "" {
		if required {
			return 0, fmt.Errorf("rendezvous: %s is not set: %w", name, ErrBadEnv)
		}
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || strconv.Itoa(n) != v {
		return 0, fmt.Errorf("rendezvous: %s=%q is not an integer >= %d: %w", name, v, min, ErrBadEnv)
	}
	return n, nil
}

func checkHostPort(name, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("rendezvous: %s=%q is not host:port: %w", name, addr, ErrBadEnv)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("rendezvous: %s=%q has an invalid port: %w", name, addr, ErrBadEnv)
	}
	return nil
}
