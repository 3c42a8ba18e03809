package coordinator

import (
	"context"
	"crypto/rand"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kilnstore/kiln/coordinator/api"
	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/gossip"
	"github.com/kilnstore/kiln/internal/storage"
)

// apiBackend adapts the server to api.Backend.
type apiBackend struct{ s *Server }

func (b *apiBackend) State() *state.State { return b.s.fsm.State }

func (b *apiBackend) Apply(ctx context.Context, cmd state.Command) error {
	return b.s.Apply(ctx, cmd)
}

func (b *apiBackend) PoolCapacity(pool string) (gossip.PoolCapacity, bool) {
	p := b.s.fsm.State.Pool(pool)
	if p == nil {
		return gossip.PoolCapacity{}, false
	}
	return b.s.view.poolCapacity(p)
}

// Services merges Raft's service records with this node's Serf view: a
// service is up when its member is alive here.
func (b *apiBackend) Services() []api.ServiceStatus {
	seen := map[string]bool{}
	var out []api.ServiceStatus
	for _, svc := range b.s.fsm.State.Services() {
		seen[svc.Binary+"/"+svc.Host] = true
		out = append(out, api.ServiceStatus{
			Binary: svc.Binary, Host: svc.Host, Zone: svc.Zone, Up: b.s.view.alive(svc.Host),
			Disabled: svc.Disabled, DisabledReason: svc.DisabledReason, UpdatedAt: svc.UpdatedAt,
		})
	}
	// Coordinators seen in Serf that the leader has not recorded yet.
	for _, m := range b.s.view.all() {
		if m.TagsErr != nil || m.Tags.Role != gossip.RoleCoordinator || seen[state.BinaryScheduler+"/"+m.Name] {
			continue
		}
		out = append(out, api.ServiceStatus{Binary: state.BinaryScheduler, Host: m.Name, Zone: b.s.cfg.DefaultZone,
			Up: m.Status == gossip.StatusAlive})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Binary != out[j].Binary {
			return out[i].Binary < out[j].Binary
		}
		return out[i].Host < out[j].Host
	})
	for i := range out {
		if out[i].Zone == "" {
			out[i].Zone = b.s.cfg.DefaultZone
		}
	}
	return out
}

// volumeAgent finds the pool and agent address of a placed volume.
func (b *apiBackend) volumeAgent(volumeID string) (*state.Pool, string, error) {
	v := b.s.fsm.State.Volume(volumeID)
	if v == nil {
		return nil, "", fmt.Errorf("volume %s: %w", volumeID, storage.ErrNotFound)
	}
	p := b.s.fsm.State.Pool(v.Pool)
	if p == nil {
		return nil, "", fmt.Errorf("volume %s is not on a registered pool: %w", volumeID, storage.ErrNotFound)
	}
	addr, ok := b.s.agentAddr(p.Agent)
	if !ok {
		return nil, "", fmt.Errorf("agent %s of volume %s has no known address", p.Agent, volumeID)
	}
	return p, addr, nil
}

func (b *apiBackend) Export(ctx context.Context, volumeID string, c storage.Connector) (storage.ConnectionInfo, error) {
	p, addr, err := b.volumeAgent(volumeID)
	if err != nil {
		return storage.ConnectionInfo{}, err
	}
	var auth storage.Credentials
	if p.Info.Protocol == protocolISCSI {
		if auth, err = b.chap(ctx, volumeID); err != nil {
			return storage.ConnectionInfo{}, err
		}
	}
	return b.s.client.ExportVolume(ctx, addr, p.Info.Name, volumeID, c, auth)
}

// protocolISCSI is the storage_protocol of pools whose exports need CHAP
// credentials from the coordinator.
const protocolISCSI = "iSCSI"

// chap returns the volume's CHAP credentials, generating and recording
// them (through Raft, so every coordinator and every later export agrees)
// at the first export, as Cinder does in create_export.
func (b *apiBackend) chap(ctx context.Context, volumeID string) (storage.Credentials, error) {
	v := b.s.fsm.State.Volume(volumeID)
	if v == nil {
		return storage.Credentials{}, fmt.Errorf("volume %s: %w", volumeID, storage.ErrNotFound)
	}
	if v.ProviderAuth == "" {
		cmd := state.SetProviderAuth{ID: volumeID, Auth: "CHAP " + randomAlnum(20) + " " + randomAlnum(16), At: time.Now().UTC()}
		if err := b.s.Apply(ctx, cmd); err != nil {
			return storage.Credentials{}, fmt.Errorf("record CHAP credentials of volume %s: %w", volumeID, err)
		}
		if v = b.s.fsm.State.Volume(volumeID); v == nil {
			return storage.Credentials{}, fmt.Errorf("volume %s: %w", volumeID, storage.ErrNotFound)
		}
	}
	f := strings.Fields(v.ProviderAuth)
	if len(f) != 3 || f[0] != "CHAP" {
		return storage.Credentials{}, fmt.Errorf("volume %s has a malformed provider_auth", volumeID)
	}
	return storage.Credentials{Method: f[0], Username: f[1], Secret: f[2]}, nil
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomAlnum returns n characters from crypto/rand without modulo bias.
func randomAlnum(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		if _, err := rand.Read(buf[:]); err != nil {
			panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
		}
		for _, c := range buf {
			if int(c) < 256/len(alnum)*len(alnum) && len(out) < n {
				out = append(out, alnum[int(c)%len(alnum)])
			}
		}
	}
	return string(out)
}

func (b *apiBackend) Unexport(ctx context.Context, volumeID string, c storage.Connector) error {
	p, addr, err := b.volumeAgent(volumeID)
	if err != nil {
		return err
	}
	return b.s.client.UnexportVolume(ctx, addr, p.Info.Name, volumeID, c)
}
