package nfs_test

import (
	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/nfs"
)

// The agent consumes drivers through its own interface; keep nfs.Driver
// satisfying it without nfs importing agent.
var _ agent.Driver = (*nfs.Driver)(nil)
