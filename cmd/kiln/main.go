// Command kiln is Kiln's single binary: coordinator, agent, dev and version.
package main

import (
	"os"

	"github.com/kilnstore/kiln/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
