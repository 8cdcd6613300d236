//go:build !unix

package main

func fileSizeLimit() (uint64, bool)      { return 0, false }
func freeBytes(dir string) (int64, bool) { return 0, false }
func writable(path string) error         { return nil }
