//go:build purego

package cpu

// purego builds use only portable Go, as the standard library's purego tag does.
const purego = true
