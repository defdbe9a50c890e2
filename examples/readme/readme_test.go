package readme_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestREADMESamplesAreExamples checks that every Go block of the README
// appears, line for line, in the body of an Example of this package, which
// go test compiles, runs and checks the output of.
func TestREADMESamplesAreExamples(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := goBlocks(string(readme))
	if len(blocks) == 0 {
		t.Fatal("README has no Go block")
	}

	const file = "readme_example_test.go"
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, src, 0)
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string]string{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Example") {
			continue
		}
		body := string(src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset])
		bodies[fn.Name.Name] = dedent(body)
	}

	used := map[string]int{} // Example name -> README block number
	for i, b := range blocks {
		found := ""
		for name, body := range bodies {
			if strings.Contains(body, b) {
				found = name
				break
			}
		}
		if found == "" {
			t.Errorf("README Go block %d is in no Example of %s:\n%s", i+1, file, b)
			continue
		}
		if prev, ok := used[found]; ok {
			t.Errorf("README Go blocks %d and %d are both in %s; give each its own Example", prev, i+1, found)
		}
		used[found] = i + 1
	}
}

// goBlocks returns the contents of the README's ```go fences, each ending
// with a newline.
func goBlocks(md string) []string {
	var blocks []string
	for {
		start := strings.Index(md, "\n```go\n")
		if start < 0 {
			return blocks
		}
		md = md[start+len("\n```go\n"):]
		end := strings.Index(md, "\n```\n")
		if end < 0 {
			return blocks
		}
		blocks = append(blocks, md[:end+1])
		md = md[end:]
	}
}

// dedent removes one leading tab from each line of a function body, the
// indentation gofmt gives it.
func dedent(body string) string {
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "\t")
	}
	return strings.Join(lines, "\n")
}
