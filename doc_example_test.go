package grpctrace_test

import (
	"go/ast"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestDocUsageIsExample checks that the program in the package doc's Usage
// section is exactly the code of Example_clientAndServer (with the greeter
// handler it uses), so that the doc shows code go test compiles and runs.
func TestDocUsageIsExample(t *testing.T) {
	fset := token.NewFileSet()
	docFile, err := parser.ParseFile(fset, "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, b := range new(comment.Parser).Parse(docFile.Doc.Text()).Content {
		if c, ok := b.(*comment.Code); ok {
			blocks = append(blocks, c.Text)
		}
	}

	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	exFile, err := parser.ParseFile(fset, "example_test.go", src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	text := func(n ast.Node) string {
		return string(src[fset.Position(n.Pos()).Offset:fset.Position(n.End()).Offset])
	}
	var parts []string
	for _, d := range exFile.Decls {
		switch d := d.(type) {
		case *ast.GenDecl:
			if d.Tok == token.TYPE && d.Specs[0].(*ast.TypeSpec).Name.Name == "greeter" {
				parts = append(parts, text(d))
			}
		case *ast.FuncDecl:
			if d.Name.Name == "Example_clientAndServer" ||
				d.Recv != nil && d.Name.Name == "Unary" && strings.Contains(text(d.Recv), "greeter") {
				// The function's doc comment is prose, not part of the snippet.
				parts = append(parts, text(d))
			}
		}
	}
	if len(parts) != 3 {
		t.Fatalf("found %d of the 3 declarations in example_test.go", len(parts))
	}
	want := strings.Join(parts, "\n\n") + "\n"
	for _, b := range blocks {
		if b == want {
			return
		}
	}
	t.Errorf("no code block of the package doc is the code of Example_clientAndServer; want:\n%s", want)
}
