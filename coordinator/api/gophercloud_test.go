package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/noauth"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/limits"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/quotasets"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/schedulerstats"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/services"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumetypes"
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
