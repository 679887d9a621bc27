package main

import (
	"time"

	"github.com/smgctl/smgctl/pkg/units"
)

// durationValue is a flag that takes the durations operators write,
// days and weeks included ("90s", "4h", "5d"), unlike pflag's Duration.
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil || *v.d == 0 {
		return "0"
	}
	return units.FormatDuration(*v.d)
}

func (v durationValue) Set(s string) error {
	d, err := units.ParseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func (durationValue) Type() string { return "duration" }
