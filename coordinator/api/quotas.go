package api

import (
	"net/http"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// Quotas and limits (cinder/api/contrib/quotas.py, schemas/quotas.py,
// cinder/api/v2/limits.py with contrib/used_limits.py).

// nonQuotaKeys are accepted in a quota update and ignored (Cinder's
// NON_QUOTA_KEYS).
var nonQuotaKeys = []string{"tenant_id", "id"}

// quotaTarget returns the project named in the URL.
func quotaTarget(c *fiber.Ctx) (string, error) {
	target := c.Params("target")
	if n := utf8.RuneCountInString(target); n > 255 {
		return "", invalidInput("quota_set_name has %d characters, more than 255.", n)
	}
	return target, nil
}

// showQuota is GET os-quota-sets/{project} (?usage=true adds usage).
func (s *server) showQuota(c *fiber.Ctx) error {
	target, err := quotaTarget(c)
	if err != nil {
		return err
	}
	usage, err := boolParam(c, "usage")
	if err != nil {
		return err
	}
	st := s.b.State()
	set := fiber.Map{}
	limits := st.QuotaLimits(target)
	if usage {
		used := st.QuotaUsage(target)
		for k, l := range limits {
			set[k] = fiber.Map{"limit": l, "in_use": used[k].InUse, "reserved": used[k].Reserved}
		}
	} else {
		for k, l := range limits {
			set[k] = l
		}
	}
	set["id"] = target
	return c.JSON(fiber.Map{"quota_set": set})
}

// showQuotaDefaults is GET os-quota-sets/{project}/defaults.
func (s *server) showQuotaDefaults(c *fiber.Ctx) error {
	target, err := quotaTarget(c)
	if err != nil {
		return err
	}
	set := fiber.Map{}
	for k, l := range s.b.State().QuotaDefaults() {
		set[k] = l
	}
	set["id"] = target
	return c.JSON(fiber.Map{"quota_set": set})
}

// parseQuotaSet validates a quota update body against the known resources.
func parseQuotaSet(body any, known map[string]int64) (map[string]int64, error) {
	set, err := unwrapObject(body, "quota_set")
	if err != nil {
		return nil, err
	}
	if len(set) == 0 {
		return nil, fieldError("quota_set", set, "{} does not have enough properties")
	}
	limits := map[string]int64{}
	var bad []string
	for _, k := range sortedKeys(set) {
		if _, isQuota := known[k]; !isQuota {
			if !slices.Contains(nonQuotaKeys, k) {
				bad = append(bad, k)
			}
			continue
		}
		n, err := validateInteger(set[k], k, -1, dbMaxInt)
		if err != nil {
			return nil, err
		}
		limits[k] = n
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, invalidInput("Bad key(s) in quota set: %s", strings.Join(bad, ", "))
	}
	return limits, nil
}

// updateQuota is PUT os-quota-sets/{project}: 200 with every limit and
// without "id" (gophercloud relies on both).
func (s *server) updateQuota(c *fiber.Ctx) error {
	target, err := quotaTarget(c)
	if err != nil {
		return err
	}
	body, err := decodeBody(c)
	if err != nil {
		return err
	}
	st := s.b.State()
	limits, err := parseQuotaSet(body, st.QuotaDefaults())
	if err != nil {
		return err
	}
	if err := s.apply(c, state.SetQuota{ProjectID: target, Limits: limits}); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"quota_set": st.QuotaLimits(target)})
}

// deleteQuota is DELETE os-quota-sets/{project}: back to the defaults
// (200, no body).
func (s *server) deleteQuota(c *fiber.Ctx) error {
	target, err := quotaTarget(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.DeleteQuota{ProjectID: target}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusOK)
}

// limitNames map absolute limits to quota resources.
var (
	maxLimitNames = map[string]string{
		"maxTotalVolumes":         state.QuotaVolumes,
		"maxTotalSnapshots":       state.QuotaSnapshots,
		"maxTotalVolumeGigabytes": state.QuotaGigabytes,
		"maxTotalBackups":         state.QuotaBackups,
		"maxTotalBackupGigabytes": state.QuotaBackupGigabytes,
	}
	usedLimitNames = map[string]string{
		"totalVolumesUsed":         state.QuotaVolumes,
		"totalGigabytesUsed":       state.QuotaGigabytes,
		"totalSnapshotsUsed":       state.QuotaSnapshots,
		"totalBackupsUsed":         state.QuotaBackups,
		"totalBackupGigabytesUsed": state.QuotaBackupGigabytes,
	}
)

// showLimits is GET limits. Unlimited maxima (-1) are reported as
// DB_MAX_INT, because clients treat a negative maximum as an error; usage
// counts reserved resources too (see the package comment).
func (s *server) showLimits(c *fiber.Ctx) error {
	ri := info(c)
	project := ri.Project
	if p, ok := queryValue(c, "project_id"); ok && p != "" && ri.Version.atLeast(mvLimitsProject) {
		project = p
	}
	st := s.b.State()
	limits, used := st.QuotaLimits(project), st.QuotaUsage(project)
	abs := fiber.Map{}
	for name, res := range maxLimitNames {
		l := limits[res]
		if l < 0 {
			l = dbMaxInt
		}
		abs[name] = l
	}
	for name, res := range usedLimitNames {
		abs[name] = used[res].InUse + used[res].Reserved
	}
	return c.JSON(fiber.Map{"limits": fiber.Map{"rate": []any{}, "absolute": abs}})
}
