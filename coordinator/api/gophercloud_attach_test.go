package api

import (
	"context"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/noauth"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/attachments"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
)

// TestGophercloudAttachments drives the attachments API and the legacy
// attach actions with gophercloud against the harness, whose Export is a
// real local-directory pool.
func TestGophercloudAttachments(t *testing.T) {
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
	client.Microversion = "3.54"
	// gophercloud's CreateOpts has no multiattach: create it raw.
	vol, err := volumes.Get(ctx, client, h.availableVolume(map[string]any{"size": 1, "multiattach": true})).Extract()
	if err != nil || !vol.Multiattach {
		t.Fatalf("volume: %+v %v", vol, err)
	}
	connector := map[string]any{"host": "h1", "initiator": connIQN, "multipath": false, "platform": "x86_64", "os_type": "linux"}

	// Without a connector, then update and complete.
	a, err := attachments.Create(ctx, client, attachments.CreateOpts{VolumeUUID: vol.ID, InstanceUUID: instA}).Extract()
	if err != nil {
		t.Fatalf("create attachment: %v", err)
	}
	if a.Status != "reserved" || a.VolumeID != vol.ID || a.Instance != instA || !a.AttachedAt.IsZero() || a.ConnectionInfo != nil {
		t.Fatalf("created %+v", a)
	}
	got, err := attachments.Get(ctx, client, a.ID).Extract()
	if err != nil || got.ID != a.ID || got.Status != "reserved" {
		t.Fatalf("get: %+v %v", got, err)
	}
	up, err := attachments.Update(ctx, client, a.ID, attachments.UpdateOpts{Connector: connector}).Extract()
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if up.Status != "attaching" || up.ConnectionInfo["driver_volume_type"] != "local" || up.AttachMode != "rw" {
		t.Fatalf("updated %+v", up)
	}
	if data := up.ConnectionInfo["data"].(map[string]any); data["host"] != "agent1" || data["access_mode"] != "rw" {
		t.Fatalf("connection data %v", data)
	}
	if err := attachments.Complete(ctx, client, a.ID).ExtractErr(); err != nil {
		t.Fatalf("complete: %v", err)
	}
	got, err = attachments.Get(ctx, client, a.ID).Extract()
	if err != nil || got.Status != "attached" || got.AttachedAt.IsZero() {
		t.Fatalf("completed: %+v %v", got, err)
	}

	// With a connector, read-only.
	b, err := attachments.Create(ctx, client, attachments.CreateOpts{VolumeUUID: vol.ID, InstanceUUID: instB,
		Connector: connector, Mode: "ro"}).Extract()
	if err != nil {
		t.Fatalf("create with connector: %v", err)
	}
	if b.Status != "attaching" || b.AttachMode != "ro" || b.ConnectionInfo["data"].(map[string]any)["access_mode"] != "ro" {
		t.Fatalf("created with connector %+v", b)
	}
	pages, err := attachments.List(client, attachments.ListOpts{VolumeID: vol.ID}).AllPages(ctx)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	all, err := attachments.ExtractAttachments(pages)
	if err != nil || len(all) != 2 {
		t.Fatalf("list: %+v %v", all, err)
	}
	if err := attachments.Delete(ctx, client, b.ID).ExtractErr(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := attachments.Delete(ctx, client, a.ID).ExtractErr(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	v, err := volumes.Get(ctx, client, vol.ID).Extract()
	if err != nil || v.Status != "available" || len(v.Attachments) != 0 {
		t.Fatalf("after deletes: %+v %v", v, err)
	}

	// Legacy actions.
	if err := volumes.Reserve(ctx, client, vol.ID).ExtractErr(); err != nil {
		t.Fatalf("reserve: %v", err)
	}
	if err := volumes.Unreserve(ctx, client, vol.ID).ExtractErr(); err != nil {
		t.Fatalf("unreserve: %v", err)
	}
	if err := volumes.Reserve(ctx, client, vol.ID).ExtractErr(); err != nil {
		t.Fatalf("reserve: %v", err)
	}
	mp := true
	ci, err := volumes.InitializeConnection(ctx, client, vol.ID, volumes.InitializeConnectionOpts{
		Host: "h1", Initiator: connIQN, Multipath: &mp, Platform: "x86_64", OSType: "linux", Wwpns: []string{"5001"}}).Extract()
	if err != nil {
		t.Fatalf("initialize_connection: %v", err)
	}
	if ci["driver_volume_type"] != "local" || ci["enforce_multipath"] != false || ci["data"].(map[string]any)["device_path"] == "" {
		t.Fatalf("connection_info %v", ci)
	}
	if err := volumes.Attach(ctx, client, vol.ID, volumes.AttachOpts{MountPoint: "/dev/vdb", InstanceUUID: instA, Mode: volumes.ReadWrite}).ExtractErr(); err != nil {
		t.Fatalf("attach: %v", err)
	}
	v, err = volumes.Get(ctx, client, vol.ID).Extract()
	if err != nil || v.Status != "in-use" || len(v.Attachments) != 1 || v.Attachments[0].ServerID != instA || v.Attachments[0].Device != "/dev/vdb" {
		t.Fatalf("attached: %+v %v", v, err)
	}
	if err := volumes.BeginDetaching(ctx, client, vol.ID).ExtractErr(); err != nil {
		t.Fatalf("begin_detaching: %v", err)
	}
	if err := volumes.Detach(ctx, client, vol.ID, volumes.DetachOpts{AttachmentID: v.Attachments[0].AttachmentID}).ExtractErr(); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if err := volumes.TerminateConnection(ctx, client, vol.ID, volumes.TerminateConnectionOpts{Host: "h1", Initiator: connIQN}).ExtractErr(); err != nil {
		t.Fatalf("terminate_connection: %v", err)
	}
	v, err = volumes.Get(ctx, client, vol.ID).Extract()
	if err != nil || v.Status != "available" || len(v.Attachments) != 0 {
		t.Fatalf("detached: %+v %v", v, err)
	}
	// Refused: begin_detaching of an available volume.
	if err := volumes.BeginDetaching(ctx, client, vol.ID).ExtractErr(); !gophercloud.ResponseCodeIs(err, 400) {
		t.Fatalf("begin_detaching of an available volume: %v", err)
	}
}
