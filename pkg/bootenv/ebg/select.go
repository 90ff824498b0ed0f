package ebg

// Decision is what EBG does at one boot, given its configs.
type Decision struct {
	// Boot is the index of the config whose kernel EBG starts, or -1 when
	// it would start none: no config is valid, or the rule lands on one
	// whose CRC is bad (EBG 0.13 then starts whatever that file held).
	Boot int
	// Trial reports that the boot is the one try of an INSTALLED config,
	// which EBG marks TESTING before it starts it.
	Trial bool
	// Failed is the index of a TESTING config EBG marks FAILED (revision
	// 0) at this boot, or -1.
	Failed int
	// After are the configs as EBG leaves them when it starts the kernel
	// (the input is not modified).
	After []*Config
}

// Same reports whether d and e boot the same config the same way.
func (d Decision) Same(e Decision) bool { return d.Boot == e.Boot && d.Trial == e.Trial }

// Select is EBG 0.13's choice at boot (load_config in env/fatvars.c) over
// the configs in the order EBG enumerates their partitions; nil stands for
// a config EBG cannot use (missing, short or with a bad CRC).
//
// The valid config with the highest revision is the latest, the next
// highest the one before (ties go to the lower index; with no revision
// above 0 the latest is index 0, valid or not). If the latest is
// in_progress, EBG boots the one before. If it is TESTING, its trial
// failed: EBG writes it back FAILED with revision 0 and boots the one
// before. If it is INSTALLED, EBG writes it back TESTING and boots it.
// Otherwise it boots the latest as it is.
func Select(configs []*Config) Decision {
	d := Decision{Boot: -1, Failed: -1, After: make([]*Config, len(configs))}
	for i, c := range configs {
		if c != nil {
			d.After[i] = c.Clone()
		}
	}
	var latestRev, preRev uint32
	latest, pre := 0, 0
	for i, c := range configs {
		if c == nil {
			continue
		}
		if c.Revision > latestRev {
			preRev, pre = latestRev, latest
			latestRev, latest = c.Revision, i
		} else if c.Revision > preRev {
			preRev, pre = c.Revision, i
		}
	}
	if latest >= len(configs) || configs[latest] == nil {
		return d
	}
	boot := latest
	switch c := d.After[latest]; {
	case c.InProgress == 1:
		boot = pre
	case c.UState == Testing:
		c.UState, c.Revision = Failed, 0
		d.Failed = latest
		boot = pre
	case c.UState == Installed:
		c.UState = Testing
		d.Trial = true
	}
	if boot < len(configs) && configs[boot] != nil {
		d.Boot = boot
	}
	return d
}
