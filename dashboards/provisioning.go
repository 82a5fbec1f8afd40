package dashboards

import (
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Grafana's dashboard provisioning file, version 1.
type provisioningFile struct {
	APIVersion int        `yaml:"apiVersion"`
	Providers  []provider `yaml:"providers"`
}

type provider struct {
	Name                  string          `yaml:"name"`
	OrgID                 int             `yaml:"orgId"`
	Folder                string          `yaml:"folder"`
	Type                  string          `yaml:"type"`
	DisableDeletion       bool            `yaml:"disableDeletion"`
	AllowUIUpdates        bool            `yaml:"allowUiUpdates"`
	UpdateIntervalSeconds int             `yaml:"updateIntervalSeconds"`
	Options               providerOptions `yaml:"options"`
}

type providerOptions struct {
	Path string `yaml:"path"`
}

// Provisioning returns a Grafana provisioning file that loads the dashboard
// JSON files in path, the directory as Grafana sees it, into folder.
// Grafana reloads the files when they change; edits made in its UI are
// refused, since the next generation would overwrite them.
func Provisioning(path, folder string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("dashboard provisioning: the dashboards' path is empty")
	}
	b, err := yaml.Marshal(provisioningFile{
		APIVersion: 1,
		Providers: []provider{{
			Name:                  "vigil",
			OrgID:                 1,
			Folder:                folder,
			Type:                  "file",
			UpdateIntervalSeconds: 30,
			Options:               providerOptions{Path: path},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard provisioning: %w", err)
	}
	return b, nil
}
