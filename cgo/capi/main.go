//go:build linux && cgo

package main

// main is required by -buildmode=c-shared; it never runs.
func main() {}
