// composecheck loads docker-compose.yml with compose-go, the loader of Docker Compose itself: schema
// validation of the Compose Specification, YAML anchors and merges, ${VAR:-default} and $$ interpolation,
// depends_on resolution. Docker is not installed on the development machines; this is what `docker compose
// config` would do with the file. It prints the normalized project as JSON (tests/foundation/test_compose.py).
//
//	go run ./scripts/compose/composecheck docker-compose.yml    (from the repository root)
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck COMPOSE_FILE")
		os.Exit(2)
	}
	file, err := filepath.Abs(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithOsEnv, // not .env: the check sees the file's own defaults (${AIRFLOW_UID:-50000})
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
