package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/relay"
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

// settingValue is a relay flag checked the way the config file checks the
// same key, and shown in help by its kind ("size", "duration", "int")
// rather than "string". The text is handed on to relay.Config.SetFrom.
type settingValue struct {
	key, kind, val string
}

func setting(key, kind, def string) *settingValue { return &settingValue{key, kind, def} }

func (v *settingValue) String() string { return v.val }
func (v *settingValue) Type() string   { return v.kind }

func (v *settingValue) Set(s string) error {
	c := relay.DefaultConfig()
	if err := c.Set(v.key, s); err != nil {
		// pflag names the flag and the value; say only what is wrong.
		msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("%s = %q: ", v.key, s))
		return errorText(strings.TrimPrefix(msg, fmt.Sprintf("%q: ", s)))
	}
	v.val = s
	return nil
}

type errorText string

func (e errorText) Error() string { return string(e) }
