// Package console tests the web console (controller/console) in a real
// headless Chromium, driven with chromedp, against a real `vigil serve`
// judging a fleet on loopback. Its screenshots go to the folder that
// $VIGIL_CONSOLE_SCREENSHOTS names.
package console
