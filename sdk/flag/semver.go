package flag

// version is a semantic version read the way the semver_lt and semver_gte
// operators read attributes: the loose grammar of Masterminds semver v3's
// NewVersion, which the TypeScript SDK copies, so that every SDK orders
// versions alike. Parsing does not allocate; pre points into the input.
//
// Grammar: an optional "v", a major number, then optionally ".minor" and
// ".patch" (missing parts are 0, leading zeros are allowed), an optional
// "-prerelease" and "+metadata" of dot-separated [0-9A-Za-z-] identifiers;
// a numeric prerelease identifier may not start with 0 unless it is "0"; at
// most 256 bytes.
type version struct {
	major, minor, patch uint64
	pre                 string
}

const maxVersionLen = 256

func parseVersion(s string) (version, bool) {
	var v version
	if len(s) > maxVersionLen {
		return v, false
	}
	i, ok := 0, false
	if i < len(s) && s[i] == 'v' {
		i++
	}
	if v.major, i, ok = parseVersionNumber(s, i); !ok {
		return v, false
	}
	if i < len(s) && s[i] == '.' {
		if v.minor, i, ok = parseVersionNumber(s, i+1); !ok {
			return v, false
		}
		if i < len(s) && s[i] == '.' {
			if v.patch, i, ok = parseVersionNumber(s, i+1); !ok {
				return v, false
			}
		}
	}
	if i < len(s) && s[i] == '-' {
		j := i + 1
		for j < len(s) && s[j] != '+' {
			j++
		}
		v.pre = s[i+1 : j]
		if !validIdentifiers(v.pre, true) {
			return v, false
		}
		i = j
	}
	if i < len(s) && s[i] == '+' {
		if !validIdentifiers(s[i+1:], false) {
			return v, false
		}
		i = len(s)
	}
	return v, i == len(s)
}

// parseVersionNumber reads the digits at s[i:] as a uint64.
func parseVersionNumber(s string, i int) (uint64, int, bool) {
	start := i
	var n uint64
	for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
		d := uint64(s[i] - '0')
		if n > (1<<64-1-d)/10 {
			return 0, i, false
		}
		n = n*10 + d
	}
	return n, i, i > start
}

// validIdentifiers checks dot-separated identifiers: none empty, each of
// [0-9A-Za-z-]; with numericRule, a numeric one has no leading zero.
func validIdentifiers(s string, numericRule bool) bool {
	for {
		part, rest, more := cutDot(s)
		if part == "" {
			return false
		}
		numeric := true
		for k := 0; k < len(part); k++ {
			c := part[k]
			switch {
			case '0' <= c && c <= '9':
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-':
				numeric = false
			default:
				return false
			}
		}
		if numericRule && numeric && len(part) > 1 && part[0] == '0' {
			return false
		}
		if !more {
			return true
		}
		s = rest
	}
}

func cutDot(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// compare orders v and o: -1, 0 or 1. Metadata does not count; a version
// with a prerelease comes before the same version without one.
func (v version) compare(o version) int {
	switch {
	case v.major != o.major:
		return cmpUint(v.major, o.major)
	case v.minor != o.minor:
		return cmpUint(v.minor, o.minor)
	case v.patch != o.patch:
		return cmpUint(v.patch, o.patch)
	case v.pre == o.pre:
		return 0
	case v.pre == "":
		return 1
	case o.pre == "":
		return -1
	}
	a, b := v.pre, o.pre
	for a != "" || b != "" {
		pa, ra, _ := cutDot(a)
		pb, rb, _ := cutDot(b)
		if d := comparePrereleasePart(pa, pb); d != 0 {
			return d
		}
		a, b = ra, rb
	}
	return 0
}

// comparePrereleasePart orders two prerelease identifiers as Masterminds
// does: a missing one first, numbers (that fit 64 bits) before words,
// numbers by value and words by bytes.
func comparePrereleasePart(a, b string) int {
	if a == b {
		return 0
	}
	if a == "" {
		return -1
	}
	if b == "" {
		return 1
	}
	na, aNum := identifierNumber(a)
	nb, bNum := identifierNumber(b)
	switch {
	case aNum && bNum:
		return cmpUint(na, nb)
	case aNum:
		return -1
	case bNum:
		return 1
	case a > b:
		return 1
	default:
		return -1
	}
}

func identifierNumber(s string) (uint64, bool) {
	n, end, ok := parseVersionNumber(s, 0)
	return n, ok && end == len(s)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
