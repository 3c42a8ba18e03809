package api

import (
	"context"
	"net/http"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/noauth"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/qos"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumetypes"

	"github.com/kilnstore/kiln/coordinator/state"
)

func (h *harness) createQoS(body map[string]any) map[string]any {
	h.t.Helper()
	r := h.post("/v3/p1/qos-specs", map[string]any{"qos_specs": body})
	wantStatus(h.t, r, http.StatusOK)
	return r.Body["qos_specs"].(map[string]any)
}

func (h *harness) createTypeID(name string) string {
	h.t.Helper()
	r := h.post("/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": name}})
	wantStatus(h.t, r, http.StatusOK)
	return r.Body["volume_type"].(map[string]any)["id"].(string)
}

func TestQoSSpecsCRUD(t *testing.T) {
	h := newHarness(t)
	r := h.post("/v3/p1/qos-specs", map[string]any{"qos_specs": map[string]any{"name": " gold ", "total_iops_sec": "100", "read_bytes_sec": 5}})
	wantStatus(t, r, http.StatusOK)
	q := r.Body["qos_specs"].(map[string]any)
	id := q["id"].(string)
	specs := q["specs"].(map[string]any)
	if q["name"] != "gold" || q["consumer"] != "back-end" || specs["total_iops_sec"] != "100" || specs["read_bytes_sec"] != "5" || len(specs) != 2 {
		t.Fatalf("created %s", r.Raw)
	}
	links := r.Body["links"].([]any)
	if len(links) != 2 || links[0].(map[string]any)["href"] != testURL+"/v3/p1/qos-specs/"+id {
		t.Fatalf("links %v", links)
	}
	front := h.createQoS(map[string]any{"name": "silver", "consumer": "front-end"})
	if front["consumer"] != "front-end" || len(front["specs"].(map[string]any)) != 0 {
		t.Fatalf("front %v", front)
	}

	h.refused(func() {
		wantFault(t, h.post("/v3/p1/qos-specs", map[string]any{"qos_specs": map[string]any{"name": "gold"}}),
			http.StatusConflict, "conflictingRequest", "QoS Specs gold already exists.")
	})
	h.unchanged(func() {
		for _, tc := range []struct {
			body any
			msg  string
		}{
			{map[string]any{}, "'qos_specs' is a required property"},
			{map[string]any{"qos_specs": "x"}, "is not of type 'object'"},
			{map[string]any{"qos_specs": map[string]any{"consumer": "both"}}, "'name' is a required property"},
			{map[string]any{"qos_specs": map[string]any{"name": "  "}}, "Please specify a name for QoS specs."},
			{map[string]any{"qos_specs": map[string]any{"name": 5}}, "is not of type 'string'"},
			{map[string]any{"qos_specs": map[string]any{"name": "x", "consumer": "middle"}}, "Valid consumer of QoS specs are: ['front-end', 'back-end', 'both']"},
			{map[string]any{"qos_specs": map[string]any{"name": "x", "k": []any{}}}, "is not of type 'string'"},
			{map[string]any{"qos_specs": map[string]any{"name": "x"}, "other": 1}, "Additional properties"},
		} {
			wantFault(t, h.post("/v3/p1/qos-specs", tc.body), http.StatusBadRequest, "badRequest", tc.msg)
		}
		wantFault(t, h.post("/v3/p1/qos-specs", "{"), http.StatusBadRequest, "badRequest", msgMalformedBody)
	})

	// List (newest first by default), filters, pagination; show.
	r = h.get("/v3/p1/qos-specs")
	wantStatus(t, r, http.StatusOK)
	list := r.Body["qos_specs"].([]any)
	if len(list) != 2 {
		t.Fatalf("list %s", r.Raw)
	}
	if got := h.get("/v3/p1/qos-specs?name=silver").Body["qos_specs"].([]any); len(got) != 1 || got[0].(map[string]any)["name"] != "silver" {
		t.Fatalf("filter %v", got)
	}
	r = h.get("/v3/p1/qos-specs?limit=1&sort=name:asc")
	if got := r.Body["qos_specs"].([]any); len(got) != 1 || got[0].(map[string]any)["name"] != "gold" || r.Body["qos_specs_links"] == nil {
		t.Fatalf("page %s", r.Raw)
	}
	wantFault(t, h.get("/v3/p1/qos-specs?marker=nope"), http.StatusNotFound, "itemNotFound", "No such QoS spec nope.")
	r = h.get("/v3/p1/qos-specs/" + id)
	wantStatus(t, r, http.StatusOK)
	if r.Body["qos_specs"].(map[string]any)["name"] != "gold" {
		t.Fatalf("show %s", r.Raw)
	}
	wantFault(t, h.get("/v3/p1/qos-specs/nope"), http.StatusNotFound, "itemNotFound", "No such QoS spec nope.")

	// Update answers with the request body.
	body := map[string]any{"qos_specs": map[string]any{"consumer": "both", "write_iops_sec": "7"}}
	r = h.put("/v3/p1/qos-specs/"+id, body)
	wantStatus(t, r, http.StatusOK)
	if got := r.Body["qos_specs"].(map[string]any); got["consumer"] != "both" || got["write_iops_sec"] != "7" || len(got) != 2 {
		t.Fatalf("update answer %s", r.Raw)
	}
	stored := h.b.st.QoSSpec(id)
	if stored.Consumer != "both" || stored.Specs["write_iops_sec"] != "7" || stored.Specs["total_iops_sec"] != "100" {
		t.Fatalf("updated %+v", stored)
	}
	h.unchanged(func() {
		wantFault(t, h.put("/v3/p1/qos-specs/"+id, map[string]any{"qos_specs": map[string]any{"consumer": "x"}}), http.StatusBadRequest, "badRequest", "Valid consumer")
		wantFault(t, h.put("/v3/p1/qos-specs/"+id, map[string]any{}), http.StatusBadRequest, "badRequest", "'qos_specs' is a required property")
		wantFault(t, h.put("/v3/p1/qos-specs/nope", body), http.StatusNotFound, "itemNotFound", "No such QoS spec nope.")
	})

	// delete_keys.
	h.unchanged(func() {
		wantFault(t, h.put("/v3/p1/qos-specs/"+id+"/delete_keys", map[string]any{}), http.StatusBadRequest, "badRequest", "'keys' is a required property")
		wantFault(t, h.put("/v3/p1/qos-specs/"+id+"/delete_keys", map[string]any{"keys": "a"}), http.StatusBadRequest, "badRequest", "is not of type 'array'")
		wantFault(t, h.put("/v3/p1/qos-specs/"+id+"/delete_keys", map[string]any{"keys": []any{1}}), http.StatusBadRequest, "badRequest", "is not of type 'string'")
		wantFault(t, h.put("/v3/p1/qos-specs/"+id+"/delete_keys", map[string]any{"keys": []any{"a", "a"}}), http.StatusBadRequest, "badRequest", "non-unique")
		wantFault(t, h.put("/v3/p1/qos-specs/nope/delete_keys", map[string]any{"keys": []any{"a"}}), http.StatusNotFound, "itemNotFound", "No such QoS spec nope.")
	})
	h.refused(func() {
		wantFault(t, h.put("/v3/p1/qos-specs/"+id+"/delete_keys", map[string]any{"keys": []any{"write_iops_sec", "nope"}}),
			http.StatusBadRequest, "badRequest", "QoS spec "+id+" has no spec with key nope.")
	})
	r = h.put("/v3/p1/qos-specs/"+id+"/delete_keys", map[string]any{"keys": []any{"write_iops_sec"}})
	wantStatus(t, r, http.StatusAccepted)
	if _, ok := h.b.st.QoSSpec(id).Specs["write_iops_sec"]; ok || len(r.Raw) != 0 {
		t.Fatal("key not deleted")
	}

	// Delete.
	wantFault(t, h.del("/v3/p1/qos-specs/nope"), http.StatusNotFound, "itemNotFound", "No such QoS spec nope.")
	wantStatus(t, h.del("/v3/p1/qos-specs/"+front["id"].(string)+"?force=maybe"), http.StatusAccepted)
	if h.b.st.QoSSpec(front["id"].(string)) != nil {
		t.Fatal("not deleted")
	}
}

func TestQoSSpecsAssociations(t *testing.T) {
	h := newHarness(t)
	id := h.createQoS(map[string]any{"name": "gold"})["id"].(string)
	other := h.createQoS(map[string]any{"name": "silver"})["id"].(string)
	fast, slow := h.createTypeID("fast"), h.createTypeID("slow")
	base := "/v3/p1/qos-specs/" + id

	h.unchanged(func() {
		wantFault(t, h.get(base+"/associate"), http.StatusBadRequest, "badRequest", "Volume Type id must not be None.")
		wantFault(t, h.get(base+"/associate?vol_type_id="), http.StatusBadRequest, "badRequest", "Volume Type id must not be None.")
		wantFault(t, h.get(base+"/disassociate"), http.StatusBadRequest, "badRequest", "Volume Type id must not be None.")
	})
	h.refused(func() {
		wantFault(t, h.get(base+"/associate?vol_type_id=nope"), http.StatusNotFound, "itemNotFound", "Volume type nope could not be found.")
		wantFault(t, h.get("/v3/p1/qos-specs/nope/associate?vol_type_id="+fast), http.StatusNotFound, "itemNotFound", "No such QoS spec nope.")
		wantFault(t, h.get("/v3/p1/qos-specs/nope/disassociate_all"), http.StatusNotFound, "itemNotFound", "No such QoS spec nope.")
	})
	r := h.get(base + "/associate?vol_type_id=" + fast)
	wantStatus(t, r, http.StatusAccepted)
	if len(r.Raw) != 0 {
		t.Fatalf("associate body %s", r.Raw)
	}
	wantStatus(t, h.get(base+"/associate?vol_type_id="+slow), http.StatusAccepted)
	wantStatus(t, h.get(base+"/associate?vol_type_id="+slow), http.StatusAccepted) // again: no-op
	if got := h.get("/v3/p1/types/" + fast).Body["volume_type"].(map[string]any)["qos_specs_id"]; got != id {
		t.Fatalf("type qos_specs_id %v", got)
	}
	h.refused(func() {
		wantFault(t, h.get("/v3/p1/qos-specs/"+other+"/associate?vol_type_id="+fast), http.StatusBadRequest, "badRequest",
			"Type "+fast+" is already associated with another qos specs: "+id)
	})
	r = h.get(base + "/associations")
	wantStatus(t, r, http.StatusOK)
	assoc := r.Body["qos_associations"].([]any)
	if len(assoc) != 2 {
		t.Fatalf("associations %s", r.Raw)
	}
	for _, a := range assoc {
		m := a.(map[string]any)
		if m["association_type"] != "volume_type" || (m["name"] != "fast" && m["name"] != "slow") {
			t.Fatalf("association %v", m)
		}
	}
	wantFault(t, h.get("/v3/p1/qos-specs/nope/associations"), http.StatusNotFound, "itemNotFound", "No such QoS spec nope.")

	// Delete refuses associated specs without force.
	h.refused(func() {
		wantFault(t, h.del(base), http.StatusBadRequest, "badRequest", "Qos specs still in use.")
		wantFault(t, h.del(base+"?force=false"), http.StatusBadRequest, "badRequest", "Qos specs still in use.")
	})
	wantStatus(t, h.get(base+"/disassociate?vol_type_id="+slow), http.StatusAccepted)
	if h.b.st.Type(slow).QoSSpecsID != "" || h.b.st.Type(fast).QoSSpecsID != id {
		t.Fatal("disassociate")
	}
	if got := h.get("/v3/p1/types/" + slow).Body["volume_type"].(map[string]any)["qos_specs_id"]; got != nil {
		t.Fatalf("disassociated type qos_specs_id %v", got)
	}
	wantStatus(t, h.get(base+"/disassociate_all"), http.StatusAccepted)
	if len(h.b.st.QoSAssociations(id)) != 0 {
		t.Fatal("disassociate_all")
	}
	wantStatus(t, h.get(base+"/associate?vol_type_id="+slow), http.StatusAccepted)
	wantStatus(t, h.del(base+"?force=true"), http.StatusAccepted)
	if h.b.st.QoSSpec(id) != nil || h.b.st.Type(slow).QoSSpecsID != "" {
		t.Fatal("forced delete")
	}
}

// TestGophercloudQoSAndVolumeActions drives QoS specs and the admin volume
// actions with gophercloud's blockstorage v3 clients.
func TestGophercloudQoSAndVolumeActions(t *testing.T) {
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

	q, err := qos.Create(ctx, client, qos.CreateOpts{Name: "gold", Consumer: qos.ConsumerBoth, Specs: map[string]string{"total_iops_sec": "500"}}).Extract()
	if err != nil || q.Name != "gold" || q.Consumer != "both" || q.Specs["total_iops_sec"] != "500" {
		t.Fatalf("create: %+v %v", q, err)
	}
	got, err := qos.Get(ctx, client, q.ID).Extract()
	if err != nil || got.ID != q.ID {
		t.Fatalf("get: %+v %v", got, err)
	}
	pages, err := qos.List(client, qos.ListOpts{}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, err := qos.ExtractQoS(pages)
	if err != nil || len(all) != 1 {
		t.Fatalf("list: %v %v", all, err)
	}
	upd, err := qos.Update(ctx, client, q.ID, qos.UpdateOpts{Specs: map[string]string{"read_iops_sec": "9"}}).Extract()
	if err != nil || upd["read_iops_sec"] != "9" {
		t.Fatalf("update: %v %v", upd, err)
	}
	if err := qos.DeleteKeys(ctx, client, q.ID, qos.DeleteKeysOpts{"read_iops_sec"}).ExtractErr(); err != nil {
		t.Fatalf("delete keys: %v", err)
	}
	vt, err := volumetypes.Create(ctx, client, volumetypes.CreateOpts{Name: "fast"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if err := qos.Associate(ctx, client, q.ID, qos.AssociateOpts{VolumeTypeID: vt.ID}).ExtractErr(); err != nil {
		t.Fatalf("associate: %v", err)
	}
	pages, err = qos.ListAssociations(client, q.ID).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	assoc, err := qos.ExtractAssociations(pages)
	if err != nil || len(assoc) != 1 || assoc[0].ID != vt.ID || assoc[0].Name != "fast" || assoc[0].AssociationType != "volume_type" {
		t.Fatalf("associations: %+v %v", assoc, err)
	}
	err = qos.Delete(ctx, client, q.ID, qos.DeleteOpts{}).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Fatalf("delete associated: %v", err)
	}
	if err := qos.Disassociate(ctx, client, q.ID, qos.DisassociateOpts{VolumeTypeID: vt.ID}).ExtractErr(); err != nil {
		t.Fatalf("disassociate: %v", err)
	}
	if err := qos.Associate(ctx, client, q.ID, qos.AssociateOpts{VolumeTypeID: vt.ID}).ExtractErr(); err != nil {
		t.Fatalf("associate again: %v", err)
	}
	if err := qos.DisassociateAll(ctx, client, q.ID).ExtractErr(); err != nil {
		t.Fatalf("disassociate all: %v", err)
	}
	if err := qos.Delete(ctx, client, q.ID, qos.DeleteOpts{}).ExtractErr(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := qos.Get(ctx, client, q.ID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("get deleted: %v", err)
	}

	// Volume actions.
	vol, err := volumes.Create(ctx, client, volumes.CreateOpts{Size: 1}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	h.makeAvailable(vol.ID)
	if err := volumes.SetBootable(ctx, client, vol.ID, volumes.BootableOpts{Bootable: true}).ExtractErr(); err != nil {
		t.Fatalf("set bootable: %v", err)
	}
	if err := volumes.SetImageMetadata(ctx, client, vol.ID, volumes.ImageMetadataOpts{Metadata: map[string]string{"os_distro": "debian"}}).ExtractErr(); err != nil {
		t.Fatalf("set image metadata: %v", err)
	}
	v, err := volumes.Get(ctx, client, vol.ID).Extract()
	if err != nil || v.Bootable != "true" || v.VolumeImageMetadata["os_distro"] != "debian" {
		t.Fatalf("volume after actions: %+v %v", v, err)
	}
	if err := volumes.ResetStatus(ctx, client, vol.ID, volumes.ResetStatusOpts{Status: "error", AttachStatus: "detached"}).ExtractErr(); err != nil {
		t.Fatalf("reset status: %v", err)
	}
	if v, err := volumes.Get(ctx, client, vol.ID).Extract(); err != nil || v.Status != "error" {
		t.Fatalf("after reset: %+v %v", v, err)
	}
	if err := volumes.ForceDelete(ctx, client, vol.ID).ExtractErr(); err != nil {
		t.Fatalf("force delete: %v", err)
	}
	if h.b.st.Volume(vol.ID).Status != state.StatusDeleting {
		t.Fatalf("force delete left %s", h.b.st.Volume(vol.ID).Status)
	}
}
