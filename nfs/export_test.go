package nfs

// SetStatfs replaces how d measures its file system, so tests can pin the
// numbers statfs would report (in bytes).
func SetStatfs(d *Driver, f func(dir string) (total, avail int64, err error)) {
	d.fsStat = func(dir string) (fsUsage, error) {
		total, avail, err := f(dir)
		return fsUsage{total: total, avail: avail}, err
	}
}

// HeldIDs reports how many volume and snapshot locks are held or awaited in d.
func HeldIDs(d *Driver) int { return d.ids.Len() }

// SetPublished makes d call f each time a thick pool's file has been renamed
// into place, before the space claimed for it is given back.
func SetPublished(d *Driver, f func()) { d.published = f }
