package api

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// QoS specs (cinder/api/contrib/qos_specs_manage.py, cinder/volume/qos_specs.py,
// views cinder/api/views/qos_specs.py; schemas qos.py). Every caller is an
// admin under noauth.

func qosNotFound(id string) error { return notFound("No such QoS spec %s.", id) }

// qosView is the view of one QoS specs record.
func qosView(q *state.QoSSpecs) fiber.Map {
	specs := maps.Clone(q.Specs)
	if specs == nil {
		specs = map[string]string{}
	}
	return fiber.Map{"id": q.ID, "name": q.Name, "consumer": q.Consumer, "specs": specs}
}

// findQoS returns the QoS specs named by the :id route parameter.
func (s *server) findQoS(c *fiber.Ctx) (*state.State, *state.QoSSpecs, error) {
	st := s.b.State()
	id := c.Params("id")
	q := st.QoSSpec(id)
	if q == nil {
		return nil, nil, qosNotFound(id)
	}
	return st, q, nil
}

var qosSortKeys = []string{"id", "name", "consumer", "created_at", "updated_at"}

func qosField(a, b *state.QoSSpecs, key string) int {
	switch key {
	case "id":
		return cmpString(a.ID, b.ID)
	case "name":
		return cmpString(a.Name, b.Name)
	case "consumer":
		return cmpString(a.Consumer, b.Consumer)
	case "created_at":
		return a.CreatedAt.Compare(b.CreatedAt)
	case "updated_at":
		return a.UpdatedAt.Compare(b.UpdatedAt)
	}
	return 0
}

// listQoS is GET qos-specs (pagination, sort, filters id, name, consumer;
// other filters are ignored, as for Cinder's admins).
func (s *server) listQoS(c *fiber.Ctx) error {
	page, err := s.parsePage(c, qosSortKeys, nil)
	if err != nil {
		return err
	}
	st := s.b.State()
	var marker **state.QoSSpecs
	if page.HasMarker {
		m := st.QoSSpec(page.Marker)
		if m == nil {
			return qosNotFound(page.Marker)
		}
		marker = &m
	}
	var items []*state.QoSSpecs
	for _, q := range st.AllQoSSpecs() {
		keep := true
		for key, field := range map[string]string{"id": q.ID, "name": q.Name, "consumer": q.Consumer} {
			if want, ok := queryValue(c, key); ok && want != field {
				keep = false
			}
		}
		if keep {
			items = append(items, q)
		}
	}
	items, full := window(items, page, compareBy(page.Sort, qosField), marker)
	views := make([]fiber.Map, len(items))
	for i, q := range items {
		views[i] = qosView(q)
	}
	body := fiber.Map{"qos_specs": views}
	if full {
		body["qos_specs_links"] = s.nextLink(c, items[len(items)-1].ID)
	}
	return c.JSON(body)
}

// qosBody reads {"qos_specs": {...}} and splits it into name (when
// present), consumer and the other keys as specs. Spec values must be
// strings or numbers (kept as their text); Cinder stores str() of anything.
func qosBody(c *fiber.Ctx) (object, map[string]string, string, error) {
	top, err := decodeObject(c)
	if err != nil {
		return nil, nil, "", err
	}
	raw, ok := top["qos_specs"]
	if !ok {
		return nil, nil, "", requiredProperty("qos_specs")
	}
	obj, ok := raw.(object)
	if !ok {
		return nil, nil, "", typeError("qos_specs", raw, "object")
	}
	if err := rejectExtra("", top, "qos_specs"); err != nil {
		return nil, nil, "", err
	}
	consumer := ""
	if v, ok := obj["consumer"]; ok {
		cs, isStr := v.(string)
		if !isStr || !slices.Contains(state.QoSConsumers, cs) {
			return nil, nil, "", badRequest("Invalid QoS specs: Valid consumer of QoS specs are: %s", pyList(state.QoSConsumers))
		}
		consumer = cs
	}
	specs := map[string]string{}
	for _, k := range sortedKeys(obj) {
		if k == "consumer" {
			continue
		}
		switch v := obj[k].(type) {
		case string:
			if utf8.RuneCountInString(v) > 255 {
				return nil, nil, "", fieldError(k, v, pyRepr(v)+" is too long")
			}
			specs[k] = v
		case json.Number:
			specs[k] = string(v)
		default:
			return nil, nil, "", typeError(k, v, "string")
		}
		if utf8.RuneCountInString(k) > 255 || k == "" {
			return nil, nil, "", badRequest("Invalid QoS specs: key %s must be 1 to 255 characters.", pyRepr(k))
		}
	}
	return obj, specs, consumer, nil
}

// createQoS is POST qos-specs (200: Cinder's create has no 202).
func (s *server) createQoS(c *fiber.Ctx) error {
	obj, specs, consumer, err := qosBody(c)
	if err != nil {
		return err
	}
	raw, ok := obj["name"]
	if !ok {
		return requiredProperty("name")
	}
	name, isStr := raw.(string)
	if !isStr {
		return typeError("name", raw, "string")
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return badRequest("Please specify a name for QoS specs.")
	}
	if utf8.RuneCountInString(name) > 255 {
		return fieldError("name", raw, "name has more than 255 characters.")
	}
	delete(specs, "name")
	at := now()
	q := state.QoSSpecs{ID: newUUID(), Name: name, Consumer: consumer, Specs: specs, CreatedAt: at}
	if q.Consumer == "" {
		q.Consumer = state.QoSBackEnd
	}
	if err := s.apply(c, state.CreateQoSSpecs{Specs: q}); err != nil {
		return err
	}
	stored := s.b.State().QoSSpec(q.ID)
	if stored == nil {
		return qosNotFound(q.ID)
	}
	return c.JSON(fiber.Map{"qos_specs": qosView(stored), "links": s.resourceLinks(c, "qos-specs", q.ID)})
}

// showQoS is GET qos-specs/{id}.
func (s *server) showQoS(c *fiber.Ctx) error {
	_, q, err := s.findQoS(c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"qos_specs": qosView(q), "links": s.resourceLinks(c, "qos-specs", q.ID)})
}

// updateQoS is PUT qos-specs/{id}: sets the consumer and adds or
// overwrites keys; the answer is the request body (200).
func (s *server) updateQoS(c *fiber.Ctx) error {
	obj, specs, consumer, err := qosBody(c)
	if err != nil {
		return err
	}
	_, q, err := s.findQoS(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.UpdateQoSSpecs{ID: q.ID, Consumer: consumer, Specs: specs, At: now()}); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"qos_specs": obj})
}

// deleteQoS is DELETE qos-specs/{id}?force= (202). force is oslo's
// lenient bool_from_string: anything but a true spelling is false.
func (s *server) deleteQoS(c *fiber.Ctx) error {
	raw, _ := queryValue(c, "force")
	force, _ := parseBool(raw)
	_, q, err := s.findQoS(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.DeleteQoSSpecs{ID: q.ID, Force: force}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// deleteQoSKeys is PUT qos-specs/{id}/delete_keys {"keys": [...]} (202).
func (s *server) deleteQoSKeys(c *fiber.Ctx) error {
	top, err := decodeObject(c)
	if err != nil {
		return err
	}
	raw, ok := top["keys"]
	if !ok {
		return requiredProperty("keys")
	}
	list, ok := raw.([]any)
	if !ok {
		return typeError("keys", raw, "array")
	}
	keys := make([]string, 0, len(list))
	for _, item := range list {
		k, _, err := stringField("keys", item, false, 1, 255)
		if err != nil {
			return err
		}
		if slices.Contains(keys, k) {
			return fieldError("keys", raw, pyRepr(raw)+" has non-unique elements")
		}
		keys = append(keys, k)
	}
	if err := rejectExtra("", top, "keys"); err != nil {
		return err
	}
	_, q, err := s.findQoS(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.DeleteQoSSpecsKeys{ID: q.ID, Keys: keys, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// volTypeParam reads the required vol_type_id query parameter.
func volTypeParam(c *fiber.Ctx) (string, error) {
	id, _ := queryValue(c, "vol_type_id")
	if id == "" {
		return "", badRequest("Volume Type id must not be None.")
	}
	return id, nil
}

// associateQoS is GET qos-specs/{id}/associate?vol_type_id= (202).
func (s *server) associateQoS(c *fiber.Ctx) error {
	typeID, err := volTypeParam(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.AssociateQoSSpecs{ID: c.Params("id"), TypeID: typeID, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// disassociateQoS is GET qos-specs/{id}/disassociate?vol_type_id= (202).
func (s *server) disassociateQoS(c *fiber.Ctx) error {
	typeID, err := volTypeParam(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.DisassociateQoSSpecs{ID: c.Params("id"), TypeID: typeID, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// disassociateAllQoS is GET qos-specs/{id}/disassociate_all (202).
func (s *server) disassociateAllQoS(c *fiber.Ctx) error {
	if err := s.apply(c, state.DisassociateAllQoSSpecs{ID: c.Params("id"), At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// qosAssociations is GET qos-specs/{id}/associations (200).
func (s *server) qosAssociations(c *fiber.Ctx) error {
	st, q, err := s.findQoS(c)
	if err != nil {
		return err
	}
	types := st.QoSAssociations(q.ID)
	items := make([]fiber.Map, len(types))
	for i, t := range types {
		items[i] = fiber.Map{"association_type": "volume_type", "name": t.Name, "id": t.ID}
	}
	return c.JSON(fiber.Map{"qos_associations": items})
}
