package election

import (
	"net/netip"
	"slices"

	"github.com/rdmabind/rdmabind/bindcore/registry"
)

// Roles returns the roles of the live claims of exactly ap in reg
// ("designated", "standby", "listening", "bound"), sorted: who takes part in
// the election of ap, as every process sees it.
//
// Errors: those of registry.List (the records it could read are still
// counted).
func Roles(reg *registry.Registry, ap netip.AddrPort) ([]string, error) {
	recs, err := reg.List()
	var out []string
	for _, r := range recs {
		if r.AddrPort() == ap {
			out = append(out, r.Role.String())
		}
	}
	slices.Sort(out)
	return out, err
}
