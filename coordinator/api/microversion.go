package api

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// apiVersion is a Cinder v3 microversion.
type apiVersion struct{ Major, Minor int }

// Supported microversions. Cinder's maximum is higher; every version up to
// maxVersion is served (features Kiln does not have yet answer as Cinder
// answers for an empty deployment).
var (
	minVersion = apiVersion{3, 0}
	maxVersion = apiVersion{3, 70}
)

// versionsUpdated is the "updated" date of the versions document.
const versionsUpdated = "2023-08-31T00:00:00Z"

// Microversions handlers branch on (cinder/api/microversions.py).
var (
	mvBootableFilter     = apiVersion{3, 2}
	mvGroupVolume        = apiVersion{3, 13}
	mvGroupSnapshotID    = apiVersion{3, 14}
	mvProviderID         = apiVersion{3, 21}
	mvSnapshotMetaFilter = apiVersion{3, 22}
	mvDeleteForce        = apiVersion{3, 23}
	mvPoolFilter         = apiVersion{3, 28}
	mvSnapshotSort       = apiVersion{3, 30}
	mvResourceFilter     = apiVersion{3, 31}
	mvPoolTypeFilter     = apiVersion{3, 35}
	mvLimitsProject      = apiVersion{3, 39}
	mvVolumeRevert       = apiVersion{3, 40}
	mvSnapshotUserID     = apiVersion{3, 41}
	mvExtendInUse        = apiVersion{3, 42}
	mvWithCount          = apiVersion{3, 45}
	mvCreateFromBackup   = apiVersion{3, 47}
	mvSharedTargets      = apiVersion{3, 48}
	mvBackendState       = apiVersion{3, 49}
	mvTypeExtraSpecsList = apiVersion{3, 52}
	mvStrictSchema       = apiVersion{3, 53}
	mvTimeFilter         = apiVersion{3, 60}
	mvClusterName        = apiVersion{3, 61}
	mvVolumeTypeID       = apiVersion{3, 63}
	mvEncryptionKeyID    = apiVersion{3, 64}
	mvConsumesQuota      = apiVersion{3, 65}
	mvSnapshotInUse      = apiVersion{3, 66}
	mvReimage            = apiVersion{3, 68}
	mvExtendCompletion   = apiVersion{3, 71}
	mvClusterSupport     = apiVersion{3, 7}
)

func (v apiVersion) String() string { return strconv.Itoa(v.Major) + "." + strconv.Itoa(v.Minor) }

// atLeast reports whether v >= o.
func (v apiVersion) atLeast(o apiVersion) bool {
	return v.Major > o.Major || (v.Major == o.Major && v.Minor >= o.Minor)
}

// versionPattern is Cinder's APIVersionRequest format.
var versionPattern = regexp.MustCompile(`^([1-9]\d*)\.([1-9]\d*|0)$`)

// Version negotiation errors; the status codes are those of Cinder's
// wsgi.Resource (InvalidAPIVersionString 400, InvalidGlobalAPIVersion 406).
func errVersionFormat(s string) error {
	return badRequest("API Version String %s is of invalid format. Must be of format MajorNum.MinorNum.", s)
}

func errVersionRange(s string) error {
	return &apiError{Status: 406, Msg: fmt.Sprintf(
		"Version %s is not supported by the API. Minimum is %s and maximum is %s.", s, minVersion, maxVersion)}
}

// negotiateVersion reads the requested microversion from the
// OpenStack-API-Version header ("volume 3.x", possibly among other
// services, comma separated) or the legacy X-OpenStack-Volume-API-Version
// header ("3.x"). Absent means 3.0; "latest" means maxVersion.
func negotiateVersion(std, legacy string) (apiVersion, error) {
	var requested string
	switch {
	case std != "":
		found := false
		for _, part := range strings.Split(std, ",") {
			fields := strings.Fields(part)
			if len(fields) == 0 || !strings.EqualFold(fields[0], "volume") {
				continue
			}
			if len(fields) != 2 {
				return apiVersion{}, errVersionFormat(strings.TrimSpace(part))
			}
			requested, found = fields[1], true
			break
		}
		if !found {
			// Cinder: VersionNotFoundForAPIMethod, an Invalid (400).
			return apiVersion{}, badRequest("API version %s is not supported on this method.", "None")
		}
	case legacy != "":
		requested = strings.TrimSpace(legacy)
	default:
		return minVersion, nil
	}
	if requested == "latest" {
		return maxVersion, nil
	}
	m := versionPattern.FindStringSubmatch(requested)
	if m == nil {
		return apiVersion{}, errVersionFormat(requested)
	}
	major, err1 := strconv.Atoi(m[1])
	minor, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil {
		return apiVersion{}, errVersionRange(requested)
	}
	v := apiVersion{major, minor}
	if !v.atLeast(minVersion) || !maxVersion.atLeast(v) {
		return apiVersion{}, errVersionRange(v.String())
	}
	return v, nil
}
