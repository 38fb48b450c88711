package rendezvous

import (
	"errors"
	"strings"
	"testing"
)

func TestDetectLauncher(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    LaunchInfo
		wantErr error
		errVar  string // the variable the error must name
	}{
		{name: "nothing", env: nil, wantErr: ErrNoLauncher},
		{name: "unrelated", env: map[string]string{"HOME": "/root", "LOCAL_RANK": "0"}, wantErr: ErrNoLauncher},
		{
			name: "sealring",
			env:  map[string]string{"SEALRING_RANK": "2", "SEALRING_WORLD_SIZE": "4", "SEALRING_LOCAL_RANK": "0", "SEALRING_STORE": "10.0.0.1:29410", "SEALRING_JOB_SECRET_FILE": "/run/job.secret"},
			want: LaunchInfo{Launcher: LauncherSealring, Rank: 2, WorldSize: 4, LocalRank: 0, StoreAddr: "10.0.0.1:29410", SecretFile: "/run/job.secret"},
		},
		{
			name: "sealring overrides slurm and torchrun",
			env:  map[string]string{"SEALRING_RANK": "1", "SEALRING_WORLD_SIZE": "2", "SLURM_PROCID": "5", "SLURM_NTASKS": "8", "RANK": "3", "WORLD_SIZE": "4", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
			want: LaunchInfo{Launcher: LauncherSealring, Rank: 1, WorldSize: 2, LocalRank: -1, StoreAddr: ""},
		},
		{
			name: "slurm",
			env:  map[string]string{"SLURM_PROCID": "7", "SLURM_NTASKS": "16", "SLURM_LOCALID": "3"},
			want: LaunchInfo{Launcher: LauncherSlurm, Rank: 7, WorldSize: 16, LocalRank: 3},
		},
		{
			name: "slurm with store and local override",
			env:  map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0", "SEALRING_LOCAL_RANK": "0", "SEALRING_STORE": "[::1]:5000"},
			want: LaunchInfo{Launcher: LauncherSlurm, Rank: 0, WorldSize: 1, LocalRank: 0, StoreAddr: "[::1]:5000"},
		},
		{
			name: "openmpi inside a slurm allocation",
			env:  map[string]string{"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"},
			want: LaunchInfo{Launcher: LauncherOpenMPI, Rank: 3, WorldSize: 4, LocalRank: 1},
		},
		{
			name: "mpich hydra",
			env:  map[string]string{"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1"},
			want: LaunchInfo{Launcher: LauncherPMI, Rank: 1, WorldSize: 2, LocalRank: 1},
		},
		{
			name: "pmi without local rank",
			env:  map[string]string{"PMI_RANK": "0", "PMI_SIZE": "2"},
			want: LaunchInfo{Launcher: LauncherPMI, Rank: 0, WorldSize: 2, LocalRank: -1},
		},
		{
			name: "torchrun",
			env:  map[string]string{"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"},
			want: LaunchInfo{Launcher: LauncherTorchrun, Rank: 5, WorldSize: 8, LocalRank: 1, StoreAddr: "node0:29500"},
		},
		{
			name: "torchrun ipv6 master",
			env:  map[string]string{"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "fe80::1", "MASTER_PORT": "29500"},
			want: LaunchInfo{Launcher: LauncherTorchrun, Rank: 0, WorldSize: 1, LocalRank: -1, StoreAddr: "[fe80::1]:29500"},
		},
		{
			name: "torchrun under srun",
			env:  map[string]string{"RANK": "9", "WORLD_SIZE": "16", "SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SEALRING_STORE": "node0:29410"},
			want: LaunchInfo{Launcher: LauncherTorchrun, Rank: 9, WorldSize: 16, LocalRank: -1, StoreAddr: "node0:29410"},
		},
		{name: "size without rank", env: map[string]string{"SEALRING_WORLD_SIZE": "4"}, wantErr: ErrBadEnv, errVar: "SEALRING_RANK"},
		{name: "rank without size", env: map[string]string{"SLURM_PROCID": "1"}, wantErr: ErrBadEnv, errVar: "SLURM_NTASKS"},
		{name: "rank not a number", env: map[string]string{"OMPI_COMM_WORLD_RANK": "one", "OMPI_COMM_WORLD_SIZE": "2"}, wantErr: ErrBadEnv, errVar: "OMPI_COMM_WORLD_RANK"},
		{name: "negative rank", env: map[string]string{"PMI_RANK": "-1", "PMI_SIZE": "2"}, wantErr: ErrBadEnv, errVar: "PMI_RANK"},
		{name: "signed rank", env: map[string]string{"PMI_RANK": "+1", "PMI_SIZE": "2"}, wantErr: ErrBadEnv, errVar: "PMI_RANK"},
		{name: "zero world", env: map[string]string{"RANK": "0", "WORLD_SIZE": "0"}, wantErr: ErrBadEnv, errVar: "WORLD_SIZE"},
		{name: "rank beyond world", env: map[string]string{"SLURM_PROCID": "4", "SLURM_NTASKS": "4"}, wantErr: ErrBadEnv, errVar: "SLURM_PROCID"},
		{name: "bad local rank", env: map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "x"}, wantErr: ErrBadEnv, errVar: "SLURM_LOCALID"},
		{name: "bad local override", env: map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SEALRING_LOCAL_RANK": "9"}, wantErr: ErrBadEnv, errVar: "SEALRING_LOCAL_RANK"},
		{name: "bad store", env: map[string]string{"SEALRING_RANK": "0", "SEALRING_WORLD_SIZE": "1", "SEALRING_STORE": "nohostport"}, wantErr: ErrBadEnv, errVar: "SEALRING_STORE"},
		{name: "bad store port", env: map[string]string{"SEALRING_RANK": "0", "SEALRING_WORLD_SIZE": "1", "SEALRING_STORE": "h:99999"}, wantErr: ErrBadEnv, errVar: "SEALRING_STORE"},
		{name: "master addr without port", env: map[string]string{"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "h"}, wantErr: ErrBadEnv, errVar: "MASTER_PORT"},
		{name: "master port without addr", env: map[string]string{"RANK": "0", "WORLD_SIZE": "1", "MASTER_PORT": "1"}, wantErr: ErrBadEnv, errVar: "MASTER_ADDR"},
		{name: "bad master port", env: map[string]string{"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "h", "MASTER_PORT": "http"}, wantErr: ErrBadEnv, errVar: "MASTER_PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DetectLauncher(func(k string) string { return tt.env[k] })
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if tt.errVar != "" && !strings.Contains(err.Error(), tt.errVar) {
					t.Fatalf("error %q does not name %s", err, tt.errVar)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
