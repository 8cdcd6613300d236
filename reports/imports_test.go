package reports

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The reports read the ledger's vocabulary only: the storage seam (issue
// 14) lets no report depend on the engine's package.
func TestReportsDoNotImportBatch(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if strings.HasPrefix(p, "github.com/aopbatch/aopbatch/batch") {
				t.Errorf("%s imports %s", name, p)
			}
		}
	}
}
