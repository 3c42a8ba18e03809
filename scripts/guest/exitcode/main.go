// Command kiln-exit ends a qemu guest with an exit status by writing a byte
// to qemu's isa-debug-exit device (-device isa-debug-exit,iobase=0xf4,iosize=0x04);
// qemu then exits with status (value<<1)|1.
//
// Usage: kiln-exit CODE [IOBASE]
//
// Debian's cloud kernel has no /dev/port, so the port is reached directly:
// ioperm(2) (falling back to iopl(2)) grants the process access and a
// one-instruction assembly function executes OUTB. /dev/port is used only
// when both fail. If qemu is still running after the write (no such device),
// kiln-exit returns 1 so the caller can fall back to powering off.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

func outb(port uint16, val uint8)

// ioperm and iopl are per thread: grant and outb must run on the same one.
func init() { runtime.LockOSThread() }

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: kiln-exit CODE [IOBASE]")
		os.Exit(2)
	}
	code, err := strconv.ParseUint(os.Args[1], 0, 8)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kiln-exit: bad code:", err)
		os.Exit(2)
	}
	port := uint64(0xf4)
	if len(os.Args) == 3 {
		if port, err = strconv.ParseUint(os.Args[2], 0, 16); err != nil {
			fmt.Fprintln(os.Stderr, "kiln-exit: bad port:", err)
			os.Exit(2)
		}
	}
	if err := grant(port); err == nil {
		outb(uint16(port), uint8(code))
	} else if err := devPort(port, uint8(code)); err != nil {
		fmt.Fprintln(os.Stderr, "kiln-exit: no I/O port access:", err)
		os.Exit(1)
	}
	// qemu exits on the write; reaching here means it did not.
	time.Sleep(2 * time.Second)
	fmt.Fprintln(os.Stderr, "kiln-exit: still running after writing the exit port")
	os.Exit(1)
}

// grant asks the kernel for access to port: ioperm for just that port, then
// iopl(3) for all ports.
func grant(port uint64) error {
	_, _, errno := syscall.Syscall(syscall.SYS_IOPERM, uintptr(port), 1, 1)
	if errno == 0 {
		return nil
	}
	if err := syscall.Iopl(3); err != nil {
		return fmt.Errorf("ioperm: %v; iopl: %v", errno, err)
	}
	return nil
}

func devPort(port uint64, val uint8) error {
	f, err := os.OpenFile("/dev/port", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt([]byte{val}, int64(port))
	return err
}
