package rbd_test

import (
	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/rbd"
)

var _ agent.Driver = (*rbd.Driver)(nil)
