package api

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/storage"
)

const (
	v327    = "volume 3.27"
	v344    = "volume 3.44"
	v354    = "volume 3.54"
	instA   = "11111111-1111-4111-8111-111111111111"
	instB   = "22222222-2222-4222-8222-222222222222"
	connIQN = "iqn.1994-05.com.example:h1"
)

var testConnector = map[string]any{"host": "h1", "ip": "10.0.0.1", "initiator": connIQN, "multipath": false,
	"platform": "x86_64", "os_type": "linux", "wwpns": []any{"50014380186b3f65"}, "nqn": "nqn.x"}

func (h *harness) postV(path, version string, body any) *response {
	return h.do(req{Method: "POST", Path: path, Body: body, Version: version})
}

func (h *harness) putV(path, version string, body any) *response {
	return h.do(req{Method: "PUT", Path: path, Body: body, Version: version})
}

func (h *harness) delV(path, version string) *response {
	return h.do(req{Method: "DELETE", Path: path, Version: version})
}

func (h *harness) volumeStatus(id string) (string, string) {
	v := h.b.st.Volume(id)
	return v.Status, v.AttachStatus
}

func (h *harness) wantVolumeStatus(id, status, attach string) {
	h.t.Helper()
	if st, as := h.volumeStatus(id); st != status || as != attach {
		h.t.Fatalf("volume %s/%s, want %s/%s", st, as, status, attach)
	}
}

// checkConnectionInfo checks a local pool's connection info: the volume
// file on the agent's host, with access mode.
func checkConnectionInfo(t *testing.T, ci any, volID, access string) map[string]any {
	t.Helper()
	m, ok := ci.(map[string]any)
	if !ok || m["driver_volume_type"] != "local" {
		t.Fatalf("connection_info %v", ci)
	}
	data := m["data"].(map[string]any)
	path, _ := data["device_path"].(string)
	if !strings.HasSuffix(path, volID) && !strings.Contains(path, volID) {
		t.Fatalf("device_path %q", path)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("device_path: %v", err)
	}
	if data["host"] != "agent1" || data["access_mode"] != access {
		t.Fatalf("data %v", data)
	}
	return m
}

func TestAttachmentsLifecycle(t *testing.T) {
	h := newHarness(t)
	vol := h.availableVolume(map[string]any{"size": 1})

	r := h.postV("/v3/p1/attachments", v327, map[string]any{"attachment": map[string]any{"volume_uuid": vol, "instance_uuid": instA}})
	wantStatus(t, r, http.StatusOK)
	a := r.Body["attachment"].(map[string]any)
	id := a["id"].(string)
	if a["status"] != "reserved" || a["instance"] != instA || a["volume_id"] != vol || a["attached_at"] != "" ||
		a["detached_at"] != "" || a["attach_mode"] != "null" || a["connection_info"] != nil {
		t.Fatalf("created %v", a)
	}
	h.wantVolumeStatus(vol, "reserved", "reserved")
	if len(h.b.exports) != 0 {
		t.Fatal("exported without a connector")
	}

	r = h.getV("/v3/p1/attachments/"+id, v327)
	wantStatus(t, r, http.StatusOK)
	if r.Body["attachment"].(map[string]any)["status"] != "reserved" {
		t.Fatalf("show %v", r.Body)
	}

	r = h.putV("/v3/p1/attachments/"+id, v327, map[string]any{"attachment": map[string]any{"connector": testConnector}})
	wantStatus(t, r, http.StatusOK)
	a = r.Body["attachment"].(map[string]any)
	if a["status"] != "attaching" || a["attach_mode"] != "rw" {
		t.Fatalf("updated %v", a)
	}
	ci := checkConnectionInfo(t, a["connection_info"], vol, "rw")
	if ci["attachment_id"] != id || ci["enforce_multipath"] != false {
		t.Fatalf("connection_info %v", ci)
	}
	if _, ok := ci["data"].(map[string]any)["qos_specs"]; ok {
		t.Fatal("qos_specs without QoS")
	}
	h.wantVolumeStatus(vol, "attaching", "attaching")
	if got := h.b.st.Attachment(id).Connector; got == nil || got.Initiator != connIQN || got.Host != "h1" || got.OSType != "linux" {
		t.Fatalf("stored connector %+v", got)
	}

	// os-complete needs 3.44.
	wantFault(t, h.postV("/v3/p1/attachments/"+id+"/action", "volume 3.43", map[string]any{"os-complete": nil}), 404, "itemNotFound", msgNotFound)
	r = h.postV("/v3/p1/attachments/"+id+"/action", v344, map[string]any{"os-complete": nil})
	wantStatus(t, r, http.StatusNoContent)
	h.wantVolumeStatus(vol, "in-use", "attached")
	a = h.getV("/v3/p1/attachments/"+id, v327).Body["attachment"].(map[string]any)
	if a["status"] != "attached" || !wireTimeRE.MatchString(a["attached_at"].(string)) {
		t.Fatalf("completed %v", a)
	}
	// The volume view lists the attached attachment.
	vv := h.get("/v3/p1/volumes/" + vol).Body["volume"].(map[string]any)
	atts := vv["attachments"].([]any)
	if len(atts) != 1 || vv["status"] != "in-use" {
		t.Fatalf("volume view %v", vv)
	}
	att := atts[0].(map[string]any)
	if att["id"] != vol || att["attachment_id"] != id || att["volume_id"] != vol || att["server_id"] != instA ||
		att["host_name"] != nil || att["device"] != nil || !wireTimeRE.MatchString(att["attached_at"].(string)) {
		t.Fatalf("volume attachment view %v", att)
	}
	// An attached volume cannot be deleted.
	h.refused(func() {
		wantFault(t, h.del("/v3/p1/volumes/"+vol), 400, "badRequest", "Invalid volume")
	})

	r = h.delV("/v3/p1/attachments/"+id, v327)
	wantStatus(t, r, http.StatusOK)
	if l := r.Body["attachments"].([]any); len(l) != 0 {
		t.Fatalf("remaining %v", l)
	}
	h.wantVolumeStatus(vol, "available", "detached")
	if len(h.b.unexports) != 1 || h.b.unexports[0] != vol {
		t.Fatalf("unexports %v", h.b.unexports)
	}
	wantFault(t, h.getV("/v3/p1/attachments/"+id, v327), 404, "itemNotFound", "Volume attachment could not be found")
}

func TestAttachmentCreateWithConnectorAndModes(t *testing.T) {
	h := newHarness(t)
	vol := h.availableVolume(map[string]any{"size": 1, "multiattach": true})
	r := h.postV("/v3/p1/attachments", v354, map[string]any{"attachment": map[string]any{
		"volume_uuid": vol, "instance_uuid": instA, "connector": testConnector, "mode": "ro"}})
	wantStatus(t, r, http.StatusOK)
	a := r.Body["attachment"].(map[string]any)
	if a["status"] != "attaching" || a["attach_mode"] != "ro" {
		t.Fatalf("created %v", a)
	}
	checkConnectionInfo(t, a["connection_info"], vol, "ro")
	h.wantVolumeStatus(vol, "attaching", "attaching")
	first := a["id"].(string)
	wantStatus(t, h.postV("/v3/p1/attachments/"+first+"/action", v344, map[string]any{"os-complete": nil}), 204)

	// A second attachment of the multiattach in-use volume.
	r = h.postV("/v3/p1/attachments", v327, map[string]any{"attachment": map[string]any{"volume_uuid": vol, "instance_uuid": instB}})
	wantStatus(t, r, http.StatusOK)
	second := r.Body["attachment"].(map[string]any)["id"].(string)
	h.wantVolumeStatus(vol, "reserved", "attached")
	r = h.putV("/v3/p1/attachments/"+second, v327, map[string]any{"attachment": map[string]any{"connector": map[string]any{"enforce_multipath": true}}})
	wantStatus(t, r, http.StatusOK)
	if ci := r.Body["attachment"].(map[string]any)["connection_info"].(map[string]any); ci["enforce_multipath"] != true {
		t.Fatalf("connection_info %v", ci)
	}
	h.wantVolumeStatus(vol, "in-use", "attached")

	// Lists: summary and detail, filters, pagination.
	r = h.getV("/v3/p1/attachments", v327)
	wantStatus(t, r, http.StatusOK)
	items := r.Body["attachments"].([]any)
	if len(items) != 2 {
		t.Fatalf("list %v", items)
	}
	if _, ok := items[0].(map[string]any)["attach_mode"]; ok {
		t.Fatal("summary has detail keys")
	}
	r = h.getV("/v3/p1/attachments/detail?status=attached", v327)
	if items := r.Body["attachments"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != first ||
		items[0].(map[string]any)["attach_mode"] != "ro" {
		t.Fatalf("detail filtered %v", items)
	}
	r = h.getV("/v3/p1/attachments?instance_id="+instB, v327)
	if items := r.Body["attachments"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != second {
		t.Fatalf("instance filter %v", items)
	}
	r = h.getV("/v3/p1/attachments?volume_id="+instB, v327)
	if items := r.Body["attachments"].([]any); len(items) != 0 {
		t.Fatalf("volume filter %v", items)
	}
	r = h.getV("/v3/p1/attachments?limit=1&sort=created_at:asc", v327)
	items = r.Body["attachments"].([]any)
	links := r.Body["attachments_links"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["id"] != first || len(links) != 1 {
		t.Fatalf("page 1 %v", r.Body)
	}
	r = h.getV("/v3/p1/attachments?limit=1&sort=created_at:asc&marker="+first, v327)
	if items := r.Body["attachments"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != second {
		t.Fatalf("page 2 %v", r.Body)
	}
	wantFault(t, h.getV("/v3/p1/attachments?marker="+instA, v327), 404, "itemNotFound", "Volume attachment could not be found")
	// Other projects see nothing.
	r = h.do(req{Method: "GET", Path: "/v3/p2/attachments", Token: "u2:p2", Version: v327})
	if items := r.Body["attachments"].([]any); len(items) != 0 {
		t.Fatalf("other project list %v", items)
	}
	wantFault(t, h.do(req{Method: "GET", Path: "/v3/p2/attachments/" + first, Token: "u2:p2", Version: v327}), 404, "itemNotFound", "")
	wantFault(t, h.do(req{Method: "DELETE", Path: "/v3/p2/attachments/" + first, Token: "u2:p2", Version: v327}), 404, "itemNotFound", "")

	// Deleting returns the remaining attachments of the volume.
	r = h.delV("/v3/p1/attachments/"+first, v327)
	wantStatus(t, r, http.StatusOK)
	if l := r.Body["attachments"].([]any); len(l) != 1 || l[0].(map[string]any)["id"] != second {
		t.Fatalf("remaining %v", l)
	}
	h.wantVolumeStatus(vol, "attaching", "attaching")
}

func TestAttachmentConnectionInfoQoS(t *testing.T) {
	h := newHarness(t)
	at := now()
	for i, consumer := range []string{state.QoSFrontEnd, state.QoSBoth, state.QoSBackEnd} {
		typeID := fmt.Sprintf("7e000000-0000-4000-8000-%012d", i)
		qosID := fmt.Sprintf("7f000000-0000-4000-8000-%012d", i)
		h.mustApply(state.CreateType{Type: state.VolumeType{ID: typeID, Name: "t" + consumer, IsPublic: true, CreatedAt: at}})
		h.mustApply(state.CreateQoSSpecs{Specs: state.QoSSpecs{ID: qosID, Name: "q" + consumer, Consumer: consumer,
			Specs: map[string]string{"total_iops_sec": "500"}, CreatedAt: at}})
		h.mustApply(state.AssociateQoSSpecs{ID: qosID, TypeID: typeID, At: at})
		vol := h.availableVolume(map[string]any{"size": 1, "volume_type": typeID})
		r := h.post("/v3/p1/volumes/"+vol+"/action", map[string]any{"os-initialize_connection": map[string]any{"connector": testConnector}})
		wantStatus(t, r, http.StatusOK)
		data := r.Body["connection_info"].(map[string]any)["data"].(map[string]any)
		qos, ok := data["qos_specs"]
		if consumer == state.QoSBackEnd {
			if ok {
				t.Fatalf("back-end QoS in connection info: %v", data)
			}
			continue
		}
		if !ok || qos.(map[string]any)["total_iops_sec"] != "500" {
			t.Fatalf("%s QoS: %v", consumer, data)
		}
	}
}

func TestAttachmentBadInput(t *testing.T) {
	h := newHarness(t)
	vol := h.availableVolume(map[string]any{"size": 1})
	errVol := h.availableVolume(map[string]any{"size": 1})
	h.setVolumeStatus(errVol, "error")
	other := h.do(req{Method: "POST", Path: "/v3/p2/volumes", Token: "u2:p2", Body: map[string]any{"volume": map[string]any{"size": 1}}})
	wantStatus(t, other, http.StatusAccepted)
	otherVol := other.Body["volume"].(map[string]any)["id"].(string)
	att := func(m map[string]any) map[string]any { return map[string]any{"attachment": m} }
	for _, tc := range []struct {
		name, version string
		body          any
		status        int
		msg           string
	}{
		{"before 3.27", "volume 3.26", att(map[string]any{"volume_uuid": vol}), 404, msgNotFound},
		{"not an object", v327, `[1]`, 400, ""},
		{"missing attachment", v327, map[string]any{}, 400, "'attachment' is a required property"},
		{"extra top key", v327, map[string]any{"attachment": map[string]any{"volume_uuid": vol}, "x": 1}, 400, "Additional properties"},
		{"attachment not object", v327, map[string]any{"attachment": "x"}, 400, "is not of type 'object'"},
		{"missing volume_uuid", v327, att(map[string]any{}), 400, "'volume_uuid' is a required property"},
		{"bad volume_uuid", v327, att(map[string]any{"volume_uuid": "nope"}), 400, "is not a 'uuid'"},
		{"volume_uuid number", v327, att(map[string]any{"volume_uuid": 5}), 400, "is not of type 'string'"},
		{"bad instance", v327, att(map[string]any{"volume_uuid": vol, "instance_uuid": "x"}), 400, "is not a 'uuid'"},
		{"mode before 3.54", v327, att(map[string]any{"volume_uuid": vol, "mode": "rw"}), 400, "Additional properties"},
		{"bad mode", v354, att(map[string]any{"volume_uuid": vol, "mode": "rx"}), 400, "is not one of ['rw', 'ro']"},
		{"extra attachment key", v327, att(map[string]any{"volume_uuid": vol, "foo": 1}), 400, "Additional properties"},
		{"connector not object", v327, att(map[string]any{"volume_uuid": vol, "connector": "h1"}), 400, "is not of type 'object'"},
		{"connector host number", v327, att(map[string]any{"volume_uuid": vol, "connector": map[string]any{"host": 5}}), 400, "is not of type 'string'"},
		{"connector multipath string", v327, att(map[string]any{"volume_uuid": vol, "connector": map[string]any{"multipath": "yes"}}), 400, "is not of type 'boolean'"},
		{"unknown volume", v327, att(map[string]any{"volume_uuid": instA}), 404, "Volume " + instA + " could not be found."},
		{"other project's volume", v327, att(map[string]any{"volume_uuid": otherVol}), 404, "could not be found"},
		{"volume in error", v327, att(map[string]any{"volume_uuid": errVol}), 400, "Volume attachments can not be created if the volume is in an error state."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.refused(func() {
				r := h.postV("/v3/p1/attachments", tc.version, tc.body)
				wantFault(t, r, tc.status, faultName(tc.status), tc.msg)
			})
		})
	}
	// Export failure: the reservation is undone.
	h.b.exportErr = fmt.Errorf("boom: %w", storage.ErrInvalid)
	r := h.postV("/v3/p1/attachments", v327, att(map[string]any{"volume_uuid": vol, "connector": testConnector}))
	wantFault(t, r, 500, "computeFault", "Unable to fetch connection information from backend")
	h.b.exportErr = fmt.Errorf("agent unreachable")
	r = h.postV("/v3/p1/attachments", v327, att(map[string]any{"volume_uuid": vol, "connector": testConnector}))
	wantFault(t, r, 503, "serviceUnavailable", "")
	h.b.exportErr = nil
	h.wantVolumeStatus(vol, "available", "detached")
	if n := len(h.b.st.Attachments(state.AttachmentFilter{})); n != 0 {
		t.Fatalf("%d attachments left by failed exports", n)
	}

	r = h.postV("/v3/p1/attachments", v327, att(map[string]any{"volume_uuid": vol}))
	wantStatus(t, r, http.StatusOK)
	id := r.Body["attachment"].(map[string]any)["id"].(string)
	// Second attachment of a reserved non-multiattach volume.
	h.refused(func() {
		wantFault(t, h.postV("/v3/p1/attachments", v327, att(map[string]any{"volume_uuid": vol, "instance_uuid": instB})), 400,
			"badRequest", "Invalid volume: Volume "+vol+" status must be available or downloading")
	})
	path := "/v3/p1/attachments/" + id
	for _, tc := range []struct {
		name   string
		body   any
		status int
		msg    string
	}{
		{"missing attachment", map[string]any{}, 400, "'attachment' is a required property"},
		{"missing connector", att(map[string]any{}), 400, "'connector' is a required property"},
		{"extra key", att(map[string]any{"connector": map[string]any{}, "mode": "rw"}), 400, "Additional properties"},
		{"connector not object", att(map[string]any{"connector": []any{}}), 400, "is not of type 'object'"},
		{"connector ip number", att(map[string]any{"connector": map[string]any{"ip": 1}}), 400, "is not of type 'string'"},
	} {
		t.Run("update "+tc.name, func(t *testing.T) {
			h.unchanged(func() {
				wantFault(t, h.putV(path, v327, tc.body), tc.status, faultName(tc.status), tc.msg)
			})
		})
	}
	h.unchanged(func() {
		wantFault(t, h.putV("/v3/p1/attachments/"+instA, v327, att(map[string]any{"connector": map[string]any{}})), 404, "itemNotFound", "")
		wantFault(t, h.delV("/v3/p1/attachments/"+instA, v327), 404, "itemNotFound", "")
		wantFault(t, h.getV(path, "volume 3.26"), 404, "itemNotFound", msgNotFound)
		wantFault(t, h.postV("/v3/p1/attachments/"+instA+"/action", v344, map[string]any{"os-complete": nil}), 404, "itemNotFound", "")
		wantFault(t, h.postV(path+"/action", v344, map[string]any{"os-bogus": nil}), 400, "badRequest", "There is no such action: os-bogus")
	})
	// Update while the volume is in error: 409, nothing exported.
	h.setVolumeStatus(vol, "error")
	exports := len(h.b.exports)
	h.refused(func() {
		wantFault(t, h.putV(path, v327, att(map[string]any{"connector": testConnector})), 409, "conflictingRequest", "error")
	})
	if len(h.b.exports) != exports {
		t.Fatal("exported for a volume in error")
	}
}

func TestLegacyAttachActions(t *testing.T) {
	h := newHarness(t)
	vol := h.availableVolume(map[string]any{"size": 1})
	act := func(body any) *response { return h.post("/v3/p1/volumes/"+vol+"/action", body) }

	wantStatus(t, act(map[string]any{"os-reserve": map[string]any{}}), 202)
	h.wantVolumeStatus(vol, "attaching", "detached")
	h.refused(func() {
		wantFault(t, act(map[string]any{"os-reserve": nil}), 400, "badRequest",
			"Invalid volume: Volume status must be available to reserve, but the status is attaching.")
	})
	wantStatus(t, act(map[string]any{"os-unreserve": map[string]any{}}), 202)
	h.wantVolumeStatus(vol, "available", "detached")
	h.refused(func() { wantStatus(t, act(map[string]any{"os-unreserve": nil}), 202) }) // no-op
	wantStatus(t, act(map[string]any{"os-reserve": map[string]any{}}), 202)

	r := act(map[string]any{"os-initialize_connection": map[string]any{"connector": testConnector}})
	wantStatus(t, r, http.StatusOK)
	ci := checkConnectionInfo(t, r.Body["connection_info"], vol, "rw")
	if ci["enforce_multipath"] != false {
		t.Fatalf("connection_info %v", ci)
	}

	wantStatus(t, act(map[string]any{"os-attach": map[string]any{"instance_uuid": instA, "mountpoint": "/dev/vdb", "mode": "rw"}}), 202)
	h.wantVolumeStatus(vol, "in-use", "attached")
	vv := h.get("/v3/p1/volumes/" + vol).Body["volume"].(map[string]any)
	atts := vv["attachments"].([]any)
	if len(atts) != 1 || atts[0].(map[string]any)["device"] != "/dev/vdb" || atts[0].(map[string]any)["server_id"] != instA {
		t.Fatalf("attachments %v", atts)
	}
	attID := atts[0].(map[string]any)["attachment_id"].(string)
	h.refused(func() {
		wantFault(t, act(map[string]any{"os-attach": map[string]any{"host_name": "h2", "mountpoint": "/dev/vdc"}}), 400, "badRequest",
			"Invalid volume: volume is already attached")
	})
	h.refused(func() { wantStatus(t, act(map[string]any{"os-roll_detaching": nil}), 202) }) // no-op
	wantStatus(t, act(map[string]any{"os-begin_detaching": map[string]any{}}), 202)
	h.wantVolumeStatus(vol, "detaching", "attached")
	h.refused(func() {
		wantFault(t, act(map[string]any{"os-begin_detaching": nil}), 400, "badRequest", "Unable to detach volume.")
	})
	wantStatus(t, act(map[string]any{"os-roll_detaching": map[string]any{}}), 202)
	h.wantVolumeStatus(vol, "in-use", "attached")
	wantStatus(t, act(map[string]any{"os-begin_detaching": map[string]any{}}), 202)
	h.refused(func() {
		wantFault(t, act(map[string]any{"os-detach": map[string]any{"attachment_id": instB}}), 404, "itemNotFound", "Volume attachment could not be found")
	})
	wantStatus(t, act(map[string]any{"os-detach": map[string]any{"attachment_id": attID}}), 202)
	h.wantVolumeStatus(vol, "available", "detached")

	// os-terminate_connection unexports and unreserves.
	wantStatus(t, act(map[string]any{"os-reserve": map[string]any{}}), 202)
	wantStatus(t, act(map[string]any{"os-terminate_connection": map[string]any{"connector": testConnector}}), 202)
	h.wantVolumeStatus(vol, "available", "detached")
	if n := len(h.b.unexports); n != 1 {
		t.Fatalf("%d unexports", n)
	}
	// Detach without attachments: nothing to do.
	h.refused(func() { wantStatus(t, act(map[string]any{"os-detach": map[string]any{}}), 202) })
	// Attach by host name, detach without an ID (one attachment).
	wantStatus(t, act(map[string]any{"os-attach": map[string]any{"host_name": "h2", "mountpoint": "/mnt"}}), 202)
	h.wantVolumeStatus(vol, "in-use", "attached")
	if a := h.b.st.VolumeAttachments(vol); len(a) != 1 || a[0].HostName != "h2" || a[0].AttachMode != "rw" {
		t.Fatalf("attachments %+v", a)
	}
	wantStatus(t, act(map[string]any{"os-detach": nil}), 202)
	h.wantVolumeStatus(vol, "available", "detached")

	// Maintenance refuses attach, detach and initialize_connection.
	h.setVolumeStatus(vol, "maintenance")
	h.refused(func() {
		wantFault(t, act(map[string]any{"os-attach": map[string]any{"host_name": "h2", "mountpoint": "/mnt"}}), 400, "badRequest", "maintenance")
		wantFault(t, act(map[string]any{"os-detach": map[string]any{}}), 400, "badRequest", "maintenance")
		wantFault(t, act(map[string]any{"os-initialize_connection": map[string]any{"connector": map[string]any{}}}), 400, "badRequest", "maintenance")
	})
}

func TestLegacyAttachActionBadInput(t *testing.T) {
	h := newHarness(t)
	vol := h.availableVolume(map[string]any{"size": 1})
	path := "/v3/p1/volumes/" + vol + "/action"
	for _, tc := range []struct {
		name   string
		body   any
		status int
		msg    string
	}{
		{"attach not object", map[string]any{"os-attach": "x"}, 400, "is not of type 'object'"},
		{"attach missing mountpoint", map[string]any{"os-attach": map[string]any{"instance_uuid": instA}}, 400, "'mountpoint' is a required property"},
		{"attach extra key", map[string]any{"os-attach": map[string]any{"instance_uuid": instA, "mountpoint": "/m", "x": 1}}, 400, "Additional properties"},
		{"attach bad instance", map[string]any{"os-attach": map[string]any{"instance_uuid": "x", "mountpoint": "/m"}}, 400, "is not a 'uuid'"},
		{"attach bad mode", map[string]any{"os-attach": map[string]any{"instance_uuid": instA, "mountpoint": "/m", "mode": "rx"}}, 400, "is not one of ['rw', 'ro']"},
		{"attach both targets", map[string]any{"os-attach": map[string]any{"instance_uuid": instA, "host_name": "h", "mountpoint": "/m"}}, 400, "simultaneously"},
		{"attach no target", map[string]any{"os-attach": map[string]any{"mountpoint": "/m"}}, 400, "Invalid request to attach volume to an invalid target"},
		{"attach mountpoint number", map[string]any{"os-attach": map[string]any{"host_name": "h", "mountpoint": 1}}, 400, "is not of type 'string'"},
		{"detach bad id", map[string]any{"os-detach": map[string]any{"attachment_id": "x"}}, 400, "is not valid under any of the given schemas"},
		{"detach extra key", map[string]any{"os-detach": map[string]any{"x": 1}}, 400, "Additional properties"},
		{"initialize no connector", map[string]any{"os-initialize_connection": map[string]any{}}, 400, "'connector' is a required property"},
		{"initialize connector not object", map[string]any{"os-initialize_connection": map[string]any{"connector": "c"}}, 400, "is not of type 'object'"},
		{"initialize bad multipath", map[string]any{"os-initialize_connection": map[string]any{"connector": map[string]any{"multipath": 1}}}, 400, "is not of type 'boolean'"},
		{"initialize extra key", map[string]any{"os-initialize_connection": map[string]any{"connector": map[string]any{}, "x": 1}}, 400, "Additional properties"},
		{"terminate no connector", map[string]any{"os-terminate_connection": map[string]any{}}, 400, "'connector' is a required property"},
		{"terminate not object", map[string]any{"os-terminate_connection": nil}, 400, "is not of type 'object'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				wantFault(t, h.post(path, tc.body), tc.status, faultName(tc.status), tc.msg)
			})
		})
	}
	// Unknown volume and other project.
	for _, name := range []string{"os-reserve", "os-unreserve", "os-begin_detaching", "os-roll_detaching"} {
		h.unchanged(func() {
			wantFault(t, h.post("/v3/p1/volumes/"+instA+"/action", map[string]any{name: map[string]any{}}), 404, "itemNotFound", "could not be found")
			wantFault(t, h.do(req{Method: "POST", Path: "/v3/p2/volumes/" + vol + "/action", Token: "u2:p2",
				Body: map[string]any{name: map[string]any{}}}), 404, "itemNotFound", "could not be found")
		})
	}
	// A volume not yet placed cannot be exported.
	creating := h.createVolume(map[string]any{"size": 1})["id"].(string)
	h.unchanged(func() {
		wantFault(t, h.post("/v3/p1/volumes/"+creating+"/action", map[string]any{"os-initialize_connection": map[string]any{"connector": map[string]any{}}}),
			400, "badRequest", "has no host")
	})
}

func TestAttachResetStatusAndConnectorMode(t *testing.T) {
	h := newHarness(t)
	vol := h.availableVolume(map[string]any{"size": 1})
	reset := func(body map[string]any) *response {
		return h.post("/v3/p1/volumes/"+vol+"/action", map[string]any{"os-reset_status": body})
	}
	h.refused(func() {
		wantFault(t, reset(map[string]any{"status": "in-use"}), 400, "badRequest", "does not have any attachments")
	})
	// Before 3.54 the connector's mode is the attach mode.
	r := h.postV("/v3/p1/attachments", v327, map[string]any{"attachment": map[string]any{
		"volume_uuid": vol, "connector": map[string]any{"host": "h", "mode": "ro"}}})
	wantStatus(t, r, http.StatusOK)
	if a := r.Body["attachment"].(map[string]any); a["attach_mode"] != "ro" || a["instance"] != nil {
		t.Fatalf("created %v", a)
	}
	wantStatus(t, reset(map[string]any{"status": "in-use"}), 202)
	h.wantVolumeStatus(vol, "in-use", "attaching")
	wantStatus(t, reset(map[string]any{"status": "available", "attach_status": "detached"}), 202)
	h.wantVolumeStatus(vol, "available", "detached")
	if n := len(h.b.st.VolumeAttachments(vol)); n != 0 {
		t.Fatalf("%d attachments after reset to detached", n)
	}
	h.refused(func() {
		wantFault(t, h.postV("/v3/p1/attachments", v327, map[string]any{"attachment": map[string]any{
			"volume_uuid": vol, "connector": map[string]any{"mode": "rx"}}}), 400, "badRequest", "is not one of ['rw', 'ro']")
	})
}
