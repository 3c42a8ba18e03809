package api

import (
	"maps"
	"net/http"
	"strings"
	"unicode"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// Volume types and extra specs (cinder/api/v3/types.py,
// cinder/api/contrib/types_manage.py, types_extra_specs.py; schemas
// volume_types.py and types_extra_specs.py).

// typeView is a volume type as Cinder's admin view shows it.
func typeView(t *state.VolumeType) fiber.Map {
	specs := maps.Clone(t.ExtraSpecs)
	if specs == nil {
		specs = map[string]string{}
	}
	return fiber.Map{
		"id":                              t.ID,
		"name":                            t.Name,
		"description":                     nullable(t.Description),
		"is_public":                       t.IsPublic,
		"extra_specs":                     specs,
		"qos_specs_id":                    nullable(t.QoSSpecsID),
		"os-volume-type-access:is_public": t.IsPublic,
	}
}

func typeNotFound(id string) error { return notFound("Volume type %s could not be found.", id) }

// findType returns the type named by the :id route parameter.
func (s *server) findType(c *fiber.Ctx) (*state.State, *state.VolumeType, error) {
	st := s.b.State()
	id := c.Params("id")
	t := st.Type(id)
	if t == nil {
		return nil, nil, typeNotFound(id)
	}
	return st, t, nil
}

var typeSortKeys = []string{"id", "name", "description", "is_public", "created_at", "updated_at"}

func typeField(a, b *state.VolumeType, key string) int {
	switch key {
	case "id":
		return cmpString(a.ID, b.ID)
	case "name":
		return cmpString(a.Name, b.Name)
	case "description":
		return cmpString(a.Description, b.Description)
	case "is_public":
		return boolCmp(a.IsPublic, b.IsPublic)
	case "created_at":
		return a.CreatedAt.Compare(b.CreatedAt)
	case "updated_at":
		return a.UpdatedAt.Compare(b.UpdatedAt)
	}
	return 0
}

// typeVisibility reads is_public: absent means public types only, "None"
// all types, otherwise a strict boolean.
func typeVisibility(c *fiber.Ctx) (*bool, error) {
	raw, ok := queryValue(c, "is_public")
	if !ok {
		pub := true
		return &pub, nil
	}
	if strings.EqualFold(raw, "none") {
		return nil, nil
	}
	b, valid := parseBool(raw)
	if !valid {
		return nil, badRequest("Invalid is_public filter [%s]", raw)
	}
	return &b, nil
}

// listTypes is GET types (is_public, extra_specs from 3.52, pagination).
func (s *server) listTypes(c *fiber.Ctx) error {
	page, err := s.parsePage(c, typeSortKeys, nil)
	if err != nil {
		return err
	}
	public, err := typeVisibility(c)
	if err != nil {
		return err
	}
	var specs map[string]string
	specsOK := true
	if raw, ok := queryValue(c, "extra_specs"); ok && info(c).Version.atLeast(mvTypeExtraSpecsList) {
		specs, specsOK = parseDictLiteral(raw)
	}
	st := s.b.State()
	var marker **state.VolumeType
	if page.HasMarker {
		m := st.Type(page.Marker)
		if m == nil {
			return typeNotFound(page.Marker)
		}
		marker = &m
	}
	var types []*state.VolumeType
	for _, t := range st.Types() {
		if (public == nil || t.IsPublic == *public) && specsOK && hasSpecs(t, specs) {
			types = append(types, t)
		}
	}
	types, full := window(types, page, compareBy(page.Sort, typeField), marker)
	items := make([]fiber.Map, len(types))
	for i, t := range types {
		items[i] = typeView(t)
	}
	body := fiber.Map{"volume_types": items}
	if full {
		body["volume_type_links"] = s.nextLink(c, types[len(types)-1].ID)
	}
	return c.JSON(body)
}

func hasSpecs(t *state.VolumeType, want map[string]string) bool {
	for k, v := range want {
		if got, ok := t.ExtraSpecs[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// showType is GET types/{id}.
func (s *server) showType(c *fiber.Ctx) error {
	_, t, err := s.findType(c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"volume_type": typeView(t)})
}

// showDefaultType is GET types/default: the __DEFAULT__ type.
func (s *server) showDefaultType(c *fiber.Ctx) error {
	t := s.b.State().Type(state.DefaultTypeID)
	if t == nil {
		return notFound("Default volume type can not be found.")
	}
	return c.JSON(fiber.Map{"volume_type": typeView(t)})
}

// typeName checks parameter_types.name: a string of 1..255 characters
// that is not only whitespace.
func typeName(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", typeError("name", v, "string")
	}
	switch {
	case s == "":
		return "", badRequest("An invalid 'name' value was provided. The 'name' can not be None.")
	case strings.TrimSpace(s) == "":
		return "", badRequest("An invalid 'name' value was provided. The 'name' can not be empty.")
	}
	if _, _, err := stringField("name", v, false, 1, 255); err != nil {
		return "", err
	}
	return s, nil
}

// descriptionField checks parameter_types.description: string or null,
// at most 255 printable characters.
func descriptionField(v any) (*string, error) {
	s, null, err := stringField("description", v, true, 0, 255)
	if err != nil || null {
		return nil, err
	}
	for _, r := range s {
		if unicode.In(r, unicode.C) || (unicode.In(r, unicode.Z) && !unicode.Is(unicode.Zs, r)) {
			return nil, fieldError("description", v, pyRepr(v)+" does not match the printable characters pattern")
		}
	}
	return &s, nil
}

// typeBody returns the "volume_type" object of a body, allowing keys.
func typeBody(c *fiber.Ctx, keys ...string) (object, error) {
	vt, err := decodeWrapped(c, "volume_type")
	if err != nil {
		return nil, err
	}
	if err := rejectExtra("volume_type", vt, keys...); err != nil {
		return nil, err
	}
	return vt, nil
}

// createType is POST types (200, as Cinder's types_manage).
func (s *server) createType(c *fiber.Ctx) error {
	vt, err := typeBody(c, "name", "description", "extra_specs", "os-volume-type-access:is_public")
	if err != nil {
		return err
	}
	raw, ok := vt["name"]
	if !ok {
		return fieldError("volume_type", vt, "'name' is a required property")
	}
	name, err := typeName(raw)
	if err != nil {
		return err
	}
	t := state.VolumeType{ID: newUUID(), Name: name, IsPublic: true, CreatedAt: now()}
	if v, ok := vt["description"]; ok {
		d, err := descriptionField(v)
		if err != nil {
			return err
		}
		if d != nil {
			t.Description = *d
		}
	}
	if v, ok := vt["extra_specs"]; ok {
		if t.ExtraSpecs, err = stringMap("extra_specs", v, false, true, metadataKey); err != nil {
			return err
		}
	}
	if v, ok := vt["os-volume-type-access:is_public"]; ok {
		if t.IsPublic, err = boolField("os-volume-type-access:is_public", v, false); err != nil {
			return err
		}
	}
	if err := s.apply(c, state.CreateType{Type: t}); err != nil {
		return err
	}
	return s.respondType(c, t.ID)
}

func (s *server) respondType(c *fiber.Ctx, id string) error {
	t := s.b.State().Type(id)
	if t == nil {
		return typeNotFound(id)
	}
	return c.JSON(fiber.Map{"volume_type": typeView(t)})
}

// updateType is PUT types/{id}.
func (s *server) updateType(c *fiber.Ctx) error {
	vt, err := typeBody(c, "name", "description", "is_public")
	if err != nil {
		return err
	}
	cmd := state.UpdateType{ID: c.Params("id"), At: now()}
	if v, ok := vt["name"]; ok {
		name, _, err := stringField("name", v, true, 0, 255)
		if err != nil {
			return err
		}
		if name != "" && strings.TrimSpace(name) == "" {
			return badRequest("Volume type name can not be empty.")
		}
		if name != "" {
			cmd.Name = &name
		}
	}
	if v, ok := vt["description"]; ok {
		if cmd.Description, err = descriptionField(v); err != nil {
			return err
		}
	}
	if v, ok := vt["is_public"]; ok {
		b, err := boolField("is_public", v, false)
		if err != nil {
			return err
		}
		cmd.IsPublic = &b
	}
	if cmd.Name == nil && cmd.Description == nil && cmd.IsPublic == nil {
		return badRequest("Specify volume type name, description, is_public or a combination thereof.")
	}
	if _, _, err := s.findType(c); err != nil {
		return err
	}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return s.respondType(c, cmd.ID)
}

// deleteType is DELETE types/{id} (202).
func (s *server) deleteType(c *fiber.Ctx) error {
	_, t, err := s.findType(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.DeleteType{ID: t.ID}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// listExtraSpecs is GET types/{id}/extra_specs.
func (s *server) listExtraSpecs(c *fiber.Ctx) error {
	_, t, err := s.findType(c)
	if err != nil {
		return err
	}
	specs := maps.Clone(t.ExtraSpecs)
	if specs == nil {
		specs = map[string]string{}
	}
	return c.JSON(fiber.Map{"extra_specs": specs})
}

// createExtraSpecs is POST types/{id}/extra_specs: adds or overwrites
// keys and echoes them (200).
func (s *server) createExtraSpecs(c *fiber.Ctx) error {
	body, err := decodeBody(c)
	if err != nil {
		return err
	}
	raw, err := unwrap(body, "extra_specs")
	if err != nil {
		return err
	}
	specs, err := stringMap("extra_specs", raw, false, true, specKey)
	if err != nil {
		return err
	}
	_, t, err := s.findType(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.SetExtraSpecs{TypeID: t.ID, Specs: specs, At: now()}); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"extra_specs": specs})
}

func extraSpecNotFound(typeID, key string) error {
	return notFound("Volume Type %s has no extra specs with key %s.", typeID, key)
}

// showExtraSpec is GET types/{id}/extra_specs/{key}: {key: value}.
func (s *server) showExtraSpec(c *fiber.Ctx) error {
	_, t, err := s.findType(c)
	if err != nil {
		return err
	}
	key := c.Params("key")
	v, ok := t.ExtraSpecs[key]
	if !ok {
		return extraSpecNotFound(t.ID, key)
	}
	return c.JSON(fiber.Map{key: v})
}

// updateExtraSpec is PUT types/{id}/extra_specs/{key} with {key: value}.
func (s *server) updateExtraSpec(c *fiber.Ctx) error {
	body, err := decodeBody(c)
	if err != nil {
		return err
	}
	specs, err := stringMap("", body, false, true, specKey)
	if err != nil {
		return err
	}
	switch {
	case len(specs) == 0:
		return badRequest("{} does not have enough properties")
	case len(specs) > 1:
		return badRequest("%s has too many properties", pyRepr(body))
	}
	key := c.Params("key")
	if _, ok := specs[key]; !ok {
		return badRequest("Request body and URI mismatch")
	}
	_, t, err := s.findType(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.SetExtraSpecs{TypeID: t.ID, Specs: specs, At: now()}); err != nil {
		return err
	}
	return c.JSON(fiber.Map{key: specs[key]})
}

// deleteExtraSpec is DELETE types/{id}/extra_specs/{key} (202).
func (s *server) deleteExtraSpec(c *fiber.Ctx) error {
	_, t, err := s.findType(c)
	if err != nil {
		return err
	}
	key := c.Params("key")
	if _, ok := t.ExtraSpecs[key]; !ok {
		return extraSpecNotFound(t.ID, key)
	}
	if err := s.apply(c, state.DeleteExtraSpec{TypeID: t.ID, Key: key, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}
