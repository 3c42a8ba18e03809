// Package rbd will hold the Ceph RBD driver (images, snapshots, clones,
// capacity from ceph df). It is built by issue 6; this version has no RBD
// support, and an agent configured with driver "rbd" refuses to start with a
// clear error.
package rbd
