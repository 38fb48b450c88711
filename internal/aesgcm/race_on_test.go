//go:build race

package aesgcm

const raceEnabled = true
