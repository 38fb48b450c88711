//go:build !unix

package main

import "time"

// processCPU is not available here; rows then carry no cpu_us.
func processCPU() (time.Duration, bool) { return 0, false }
