package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/noauth"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/limits"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/quotasets"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/schedulerstats"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/services"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumetypes"

	"github.com/kilnstore/kiln/coordinator/state"
)

// TestGophercloud drives the API with gophercloud's noauth block-storage
// client over a real loopback listener. No dispatcher runs, so volumes stay
// in creating unless the test drives them through the state machine.
func TestGophercloud(t *testing.T) {
	// Links come from the request's host, so they point at the listener.
	h := newHarness(t, func(o *Options) { o.PublicURL = "" })
	base := h.serve()
	h.b.services = []ServiceStatus{{Binary: "cinder-volume", Host: "agent1", Zone: "nova", Up: true, UpdatedAt: now()}}
	ctx := context.Background()
	provider, err := noauth.NewClient(gophercloud.AuthOptions{Username: "u1", TenantName: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := noauth.NewBlockStorageNoAuthV3(provider, noauth.EndpointOpts{CinderEndpoint: base + "/v3"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("types", func(t *testing.T) { gopherTypes(ctx, t, client) })
	t.Run("volumes", func(t *testing.T) { gopherVolumes(ctx, t, h, client) })
	t.Run("quotas", func(t *testing.T) { gopherQuotas(ctx, t, client) })
	t.Run("read-only", func(t *testing.T) { gopherReadOnly(ctx, t, client) })
}

func gopherTypes(ctx context.Context, t *testing.T, client *gophercloud.ServiceClient) {
	public := true
	vt, err := volumetypes.Create(ctx, client, volumetypes.CreateOpts{
		Name: "gold", Description: "fast", IsPublic: &public, ExtraSpecs: map[string]string{"volume_backend_name": "nfs"},
	}).Extract()
	if err != nil {
		t.Fatalf("create type: %v", err)
	}
	if vt.Name != "gold" || !vt.IsPublic || !vt.PublicAccess || vt.ExtraSpecs["volume_backend_name"] != "nfs" {
		t.Errorf("created type %+v", vt)
	}
	got, err := volumetypes.Get(ctx, client, vt.ID).Extract()
	if err != nil || got.Description != "fast" {
		t.Fatalf("get type: %+v %v", got, err)
	}
	pages, err := volumetypes.List(client, volumetypes.ListOpts{Limit: 1}).AllPages(ctx)
	if err != nil {
		t.Fatalf("list types: %v", err)
	}
	all, err := volumetypes.ExtractVolumeTypes(pages)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range all {
		names = append(names, x.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"__DEFAULT__", "gold"}) {
		t.Errorf("listed types %v", names)
	}
	name := "platinum"
	if u, err := volumetypes.Update(ctx, client, vt.ID, volumetypes.UpdateOpts{Name: &name}).Extract(); err != nil || u.Name != name {
		t.Fatalf("update type: %+v %v", u, err)
	}

	if _, err := volumetypes.CreateExtraSpecs(ctx, client, vt.ID, volumetypes.ExtraSpecsOpts{"tier": "1", "x": "y"}).Extract(); err != nil {
		t.Fatalf("create extra specs: %v", err)
	}
	specs, err := volumetypes.ListExtraSpecs(ctx, client, vt.ID).Extract()
	if err != nil || len(specs) != 3 || specs["tier"] != "1" {
		t.Fatalf("list extra specs: %v %v", specs, err)
	}
	if s, err := volumetypes.GetExtraSpec(ctx, client, vt.ID, "tier").Extract(); err != nil || s["tier"] != "1" {
		t.Fatalf("get extra spec: %v %v", s, err)
	}
	if s, err := volumetypes.UpdateExtraSpec(ctx, client, vt.ID, volumetypes.ExtraSpecsOpts{"tier": "2"}).Extract(); err != nil || s["tier"] != "2" {
		t.Fatalf("update extra spec: %v %v", s, err)
	}
	if err := volumetypes.DeleteExtraSpec(ctx, client, vt.ID, "x").ExtractErr(); err != nil {
		t.Fatalf("delete extra spec: %v", err)
	}
	err = volumetypes.GetExtraSpec(ctx, client, vt.ID, "x").Err
	if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("deleted extra spec: %v", err)
	}
	tmp, err := volumetypes.Create(ctx, client, volumetypes.CreateOpts{Name: "tmp"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if err := volumetypes.Delete(ctx, client, tmp.ID).ExtractErr(); err != nil {
		t.Fatalf("delete type: %v", err)
	}
	if err := volumetypes.Get(ctx, client, tmp.ID).Err; !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("deleted type: %v", err)
	}
}

func gopherVolumes(ctx context.Context, t *testing.T, h *harness, client *gophercloud.ServiceClient) {
	var ids []string
	for i := range 5 {
		v, err := volumes.Create(ctx, client, volumes.CreateOpts{
			Size: i + 1, Name: fmt.Sprintf("vol%d", i), VolumeType: "platinum",
			Metadata: map[string]string{"parity": []string{"even", "odd"}[i%2]},
		}, nil).Extract()
		if err != nil {
			t.Fatalf("create volume: %v", err)
		}
		if v.Status != "creating" || v.Size != i+1 || v.VolumeType != "platinum" || v.CreatedAt.IsZero() || v.TenantID != "p1" {
			t.Errorf("created %+v", v)
		}
		ids = append(ids, v.ID)
	}
	v, err := volumes.Get(ctx, client, ids[0]).Extract()
	if err != nil || v.Name != "vol0" || v.Metadata["parity"] != "even" || v.Bootable != "false" || v.UpdatedAt.IsZero() {
		t.Fatalf("get volume: %+v %v", v, err)
	}
	// Pagination: a small page size must still reach every volume.
	pages, err := volumes.List(client, volumes.ListOpts{Limit: 2}).AllPages(ctx)
	if err != nil {
		t.Fatalf("list volumes: %v", err)
	}
	all, err := volumes.ExtractVolumes(pages)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, v := range all {
		listed = append(listed, v.ID)
	}
	want := slices.Clone(ids)
	slices.Reverse(want) // created_at descending
	if !slices.Equal(listed, want) {
		t.Errorf("paged list %v, want %v", listed, want)
	}
	pages, err = volumes.List(client, volumes.ListOpts{Metadata: map[string]string{"parity": "odd"}, Sort: "size:asc"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	odd, _ := volumes.ExtractVolumes(pages)
	if len(odd) != 2 || odd[0].ID != ids[1] || odd[1].ID != ids[3] {
		t.Errorf("metadata filter: %+v", odd)
	}

	name, desc := "renamed", "described"
	u, err := volumes.Update(ctx, client, ids[0], volumes.UpdateOpts{Name: &name, Description: &desc}).Extract()
	if err != nil || u.Name != name || u.Description != desc {
		t.Fatalf("update volume: %+v %v", u, err)
	}

	// A creating volume cannot be deleted; an available one can.
	err = volumes.Delete(ctx, client, ids[1], volumes.DeleteOpts{}).ExtractErr()
	var unexpected gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &unexpected) || unexpected.Actual != http.StatusBadRequest {
		t.Errorf("delete creating volume: %v", err)
	}
	h.makeAvailable(ids[1])
	if err := volumes.Delete(ctx, client, ids[1], volumes.DeleteOpts{Cascade: true}).ExtractErr(); err != nil {
		t.Fatalf("delete volume: %v", err)
	}
	if v, err := volumes.Get(ctx, client, ids[1]).Extract(); err != nil || v.Status != "deleting" {
		t.Errorf("deleted volume: %+v %v", v, err)
	}
	if err := volumes.Get(ctx, client, "00000000-0000-4000-8000-000000000000").Err; !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("missing volume: %v", err)
	}
	// Quota errors are 413.
	_, err = volumes.Create(ctx, client, volumes.CreateOpts{Size: 5000}, nil).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusRequestEntityTooLarge) {
		t.Errorf("over quota: %v", err)
	}
}

func gopherQuotas(ctx context.Context, t *testing.T, client *gophercloud.ServiceClient) {
	qs, err := quotasets.Get(ctx, client, "p1").Extract()
	if err != nil || qs.ID != "p1" || qs.Volumes != 10 || qs.Gigabytes != 1000 || qs.PerVolumeGigabytes != -1 {
		t.Fatalf("get quota: %+v %v", qs, err)
	}
	if _, ok := qs.Extra["volumes_platinum"]; !ok {
		t.Errorf("per-type quota missing from %v", qs.Extra)
	}
	def, err := quotasets.GetDefaults(ctx, client, "p1").Extract()
	if err != nil || def.Snapshots != 10 {
		t.Fatalf("defaults: %+v %v", def, err)
	}
	use, err := quotasets.GetUsage(ctx, client, "p1").Extract()
	if err != nil || use.Volumes.Limit != 10 || use.Volumes.InUse+use.Volumes.Reserved != 5 || use.Gigabytes.Reserved+use.Gigabytes.InUse != 15 {
		t.Fatalf("usage: %+v %v", use, err)
	}
	twenty := 20
	upd, err := quotasets.Update(ctx, client, "p1", quotasets.UpdateOpts{Volumes: &twenty, Extra: map[string]any{"gigabytes_platinum": 100}}).Extract()
	if err != nil || upd.Volumes != 20 || upd.ID != "" || upd.Extra["gigabytes_platinum"] != 100.0 {
		t.Fatalf("update quota: %+v %v", upd, err)
	}
	one := 1
	err = quotasets.Update(ctx, client, "p1", quotasets.UpdateOpts{Volumes: &one}).Err
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("quota below usage: %v", err)
	}
	if err := quotasets.Delete(ctx, client, "p1").ExtractErr(); err != nil {
		t.Fatalf("delete quota: %v", err)
	}
	if qs, err := quotasets.Get(ctx, client, "p1").Extract(); err != nil || qs.Volumes != 10 {
		t.Errorf("after delete: %+v %v", qs, err)
	}
}

func gopherReadOnly(ctx context.Context, t *testing.T, client *gophercloud.ServiceClient) {
	l, err := limits.Get(ctx, client).Extract()
	if err != nil || l.Absolute.MaxTotalVolumes != 10 || l.Absolute.TotalVolumesUsed != 5 {
		t.Fatalf("limits: %+v %v", l, err)
	}
	pages, err := schedulerstats.List(client, schedulerstats.ListOpts{Detail: true}).AllPages(ctx)
	if err != nil {
		t.Fatalf("pools: %v", err)
	}
	pools, err := schedulerstats.ExtractStoragePools(pages)
	if err != nil || len(pools) != 2 {
		t.Fatalf("pools: %+v %v", pools, err)
	}
	if c := pools[0].Capabilities; c.TotalCapacityGB != 100 || c.VendorName != "Kiln" || c.MaxOverSubscriptionRatio != "2" || !c.Multiattach {
		t.Errorf("pool capabilities %+v", c)
	}
	pages, err = services.List(client, services.ListOpts{}).AllPages(ctx)
	if err != nil {
		t.Fatalf("services: %v", err)
	}
	svcs, err := services.ExtractServices(pages)
	if err != nil || len(svcs) != 1 || svcs[0].State != "up" || svcs[0].UpdatedAt.IsZero() {
		t.Fatalf("services: %+v %v", svcs, err)
	}
}

// TestGophercloudSnapshots drives snapshots, volumes from sources, extend
// and revert with gophercloud over a loopback listener. Agent work is done
// through the state machine.
func TestGophercloudSnapshots(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.PublicURL = "" })
	base := h.serve()
	ctx := context.Background()
	provider, err := noauth.NewClient(gophercloud.AuthOptions{Username: "u1", TenantName: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := noauth.NewBlockStorageNoAuthV3(provider, noauth.EndpointOpts{CinderEndpoint: base + "/v3"})
	if err != nil {
		t.Fatal(err)
	}
	vol, err := volumes.Create(ctx, client, volumes.CreateOpts{Size: 2, Name: "origin"}, nil).Extract()
	if err != nil {
		t.Fatalf("create volume: %v", err)
	}
	h.makeAvailable(vol.ID)

	var ids []string
	for i := range 3 {
		sn, err := snapshots.Create(ctx, client, snapshots.CreateOpts{
			VolumeID: vol.ID, Name: fmt.Sprintf("snap%d", i), Description: "d", Metadata: map[string]string{"k": "v"},
		}).Extract()
		if err != nil {
			t.Fatalf("create snapshot: %v", err)
		}
		if sn.Status != "creating" || sn.Size != 2 || sn.VolumeID != vol.ID || sn.CreatedAt.IsZero() || sn.Metadata["k"] != "v" {
			t.Errorf("created %+v", sn)
		}
		ids = append(ids, sn.ID)
		h.mustApply(state.SnapshotCreated{ID: sn.ID, Location: "/s", At: now()})
		time.Sleep(time.Millisecond)
	}
	sn, err := snapshots.Get(ctx, client, ids[0]).Extract()
	if err != nil || sn.Name != "snap0" || sn.Status != "available" || sn.Progress != "100%" || sn.ProjectID != "p1" || sn.UpdatedAt.IsZero() {
		t.Fatalf("get snapshot: %+v %v", sn, err)
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	for name, pager := range map[string]func() ([]snapshots.Snapshot, error){
		"list": func() ([]snapshots.Snapshot, error) {
			pages, err := snapshots.List(client, snapshots.ListOpts{Limit: 1}).AllPages(ctx)
			if err != nil {
				return nil, err
			}
			return snapshots.ExtractSnapshots(pages)
		},
		"detail": func() ([]snapshots.Snapshot, error) {
			pages, err := snapshots.ListDetail(client, snapshots.ListOpts{Limit: 2, VolumeID: vol.ID}).AllPages(ctx)
			if err != nil {
				return nil, err
			}
			return snapshots.ExtractSnapshots(pages)
		},
	} {
		all, err := pager()
		if err != nil {
			t.Fatalf("%s snapshots: %v", name, err)
		}
		var got []string
		for _, s := range all {
			got = append(got, s.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	newName, newDesc := "renamed", "described"
	if u, err := snapshots.Update(ctx, client, ids[0], snapshots.UpdateOpts{Name: &newName, Description: &newDesc}).Extract(); err != nil || u.Name != newName || u.Description != newDesc {
		t.Fatalf("update snapshot: %+v %v", u, err)
	}
	if m, err := snapshots.UpdateMetadata(ctx, client, ids[0], snapshots.UpdateMetadataOpts{Metadata: map[string]any{"k": "v2"}}).ExtractMetadata(); err != nil || m["k"] != "v2" {
		t.Fatalf("update snapshot metadata: %v %v", m, err)
	}
	if err := snapshots.ResetStatus(ctx, client, ids[1], snapshots.ResetStatusOpts{Status: "creating"}).ExtractErr(); err != nil {
		t.Fatalf("reset status: %v", err)
	}
	if err := snapshots.UpdateStatus(ctx, client, ids[1], snapshots.UpdateStatusOpts{Status: "available", Progress: "100%"}).ExtractErr(); err != nil {
		t.Fatalf("update status: %v", err)
	}
	err = snapshots.UpdateStatus(ctx, client, ids[1], snapshots.UpdateStatusOpts{Status: "error"}).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("update status from available: %v", err)
	}

	// Volumes from a snapshot and from a volume take the source's size.
	fromSnap, err := volumes.Create(ctx, client, volumes.CreateOpts{SnapshotID: ids[0]}, nil).Extract()
	if err != nil || fromSnap.Size != 2 || fromSnap.SnapshotID != ids[0] {
		t.Fatalf("volume from snapshot: %+v %v", fromSnap, err)
	}
	clone, err := volumes.Create(ctx, client, volumes.CreateOpts{SourceVolID: vol.ID, Size: 3}, nil).Extract()
	if err != nil || clone.Size != 3 || clone.SourceVolID != vol.ID {
		t.Fatalf("clone: %+v %v", clone, err)
	}
	_, err = volumes.Create(ctx, client, volumes.CreateOpts{SnapshotID: "00000000-0000-4000-8000-000000000000"}, nil).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("volume from a missing snapshot: %v", err)
	}

	// Revert needs microversion 3.40; gophercloud has no call for it.
	revert := func(c *gophercloud.ServiceClient) error {
		_, err := c.Post(ctx, c.ServiceURL("volumes", vol.ID, "action"),
			map[string]any{"revert": map[string]any{"snapshot_id": ids[2]}}, nil, &gophercloud.RequestOpts{OkCodes: []int{202}})
		return err
	}
	if err := revert(client); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("revert at 3.0: %v", err)
	}
	v340 := *client
	v340.Microversion = "3.40"
	if err := revert(&v340); err != nil {
		t.Fatalf("revert: %v", err)
	}
	if v, err := volumes.Get(ctx, client, vol.ID).Extract(); err != nil || v.Status != "reverting" {
		t.Fatalf("reverting volume: %+v %v", v, err)
	}
	h.mustApply(state.VolumeReverted{ID: vol.ID, At: now()})

	if err := volumes.ExtendSize(ctx, client, vol.ID, volumes.ExtendSizeOpts{NewSize: 5}).ExtractErr(); err != nil {
		t.Fatalf("extend: %v", err)
	}
	if v, err := volumes.Get(ctx, client, vol.ID).Extract(); err != nil || v.Status != "extending" {
		t.Fatalf("extending volume: %+v %v", v, err)
	}
	h.mustApply(state.VolumeExtended{ID: vol.ID, At: now()})
	if v, err := volumes.Get(ctx, client, vol.ID).Extract(); err != nil || v.Size != 5 || v.Status != "available" {
		t.Fatalf("extended volume: %+v %v", v, err)
	}
	err = volumes.ExtendSize(ctx, client, vol.ID, volumes.ExtendSizeOpts{NewSize: 4}).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("shrink: %v", err)
	}
	// Force delete skips the status check, not the snapshots check.
	err = volumes.ForceDelete(ctx, client, vol.ID).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("volume force delete with snapshots: %v", err)
	}

	// Deletes: the volume with snapshots needs cascade.
	if err := snapshots.Delete(ctx, client, ids[0]).ExtractErr(); err != nil {
		t.Fatalf("delete snapshot: %v", err)
	}
	if err := snapshots.ForceDelete(ctx, client, ids[1]).ExtractErr(); err != nil {
		t.Fatalf("force delete snapshot: %v", err)
	}
	for _, id := range ids[:2] {
		if s, err := snapshots.Get(ctx, client, id).Extract(); err != nil || s.Status != "deleting" {
			t.Errorf("deleted snapshot: %+v %v", s, err)
		}
	}
	if err := snapshots.Get(ctx, client, "00000000-0000-4000-8000-000000000000").Err; !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("missing snapshot: %v", err)
	}
	err = volumes.Delete(ctx, client, vol.ID, volumes.DeleteOpts{}).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("delete volume with snapshots: %v", err)
	}
	if err := volumes.Delete(ctx, client, vol.ID, volumes.DeleteOpts{Cascade: true}).ExtractErr(); err != nil {
		t.Fatalf("cascade delete: %v", err)
	}
	if s, err := snapshots.Get(ctx, client, ids[2]).Extract(); err != nil || s.Status != "deleting" {
		t.Errorf("cascaded snapshot: %+v %v", s, err)
	}
}
