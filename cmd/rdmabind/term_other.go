//go:build !linux

package main

import "os"

// isTerminal reports false off Linux: bench draws no progress bar there.
func isTerminal(f *os.File) bool { return false }
