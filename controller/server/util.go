package server

import "strconv"

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func strconvQuote(s string) string { return strconv.Quote(s) }
