package coordinator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	"github.com/kilnstore/kiln/internal/testcluster"
)

// TestGophercloudAgainstCluster drives a real 3-coordinator cluster with
// gophercloud's block-storage client, the way Terraform's provider does:
// create, wait for available, list with pagination, update, delete, wait
// for the 404.
func TestGophercloudAgainstCluster(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Coordinators: 3, Agents: 2})
	ctx := context.Background()
	// Talk to a follower on purpose: its writes are forwarded.
	follower := 0
	for i, s := range c.Coordinators {
		if !s.IsLeader() {
			follower = i
			break
		}
	}
	client := c.BlockStorage(follower, "tf")
	var ids []string
	for i := 0; i < 5; i++ {
		v, err := volumes.Create(ctx, client, volumes.CreateOpts{Size: 1 + i, Name: "tf-vol", Metadata: map[string]string{"i": "x"}}, nil).Extract()
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		ids = append(ids, v.ID)
	}
	for _, id := range ids {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := volumes.WaitForStatus(wctx, client, id, "available")
		cancel()
		if err != nil {
			t.Fatalf("wait for %s: %v", id, err)
		}
	}
	pages, err := volumes.List(client, volumes.ListOpts{Limit: 2}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, err := volumes.ExtractVolumes(pages)
	if err != nil || len(all) != 5 {
		t.Fatalf("listed %d volumes over pages (%v), want 5", len(all), err)
	}
	for _, v := range all {
		if v.Status != "available" || v.Host == "" {
			t.Fatalf("listed volume %+v", v)
		}
	}
	name := "renamed"
	if v, err := volumes.Update(ctx, client, ids[0], volumes.UpdateOpts{Name: &name}).Extract(); err != nil || v.Name != name {
		t.Fatalf("update: %+v %v", v, err)
	}
	for _, id := range ids {
		if err := volumes.Delete(ctx, client, id, volumes.DeleteOpts{}).ExtractErr(); err != nil {
			t.Fatalf("delete: %v", err)
		}
	}
	testcluster.WaitForT(t, 30*time.Second, func() error {
		for _, id := range ids {
			_, err := volumes.Get(ctx, client, id).Extract()
			if !gophercloud.ResponseCodeIs(err, 404) {
				return errors.New("volume not gone yet")
			}
		}
		return nil
	})
}
