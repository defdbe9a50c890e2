package readme_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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

	names := make([]string, 0, len(bodies))
	for name := range bodies {
		names = append(names, name)
	}
	sort.Strings(names)
	used := map[string]int{} // Example name -> README block number
	for i, b := range blocks {
		if len(strings.TrimSpace(strings.Join(b, ""))) == 0 {
			t.Errorf("README Go block %d is empty", i+1)
			continue
		}
		found := ""
		for _, name := range names {
			if containsLines(bodies[name], b) {
				found = name
				break
			}
		}
		if found == "" {
			t.Errorf("README Go block %d is in no Example of %s:\n%s", i+1, file, strings.Join(b, "\n"))
			continue
		}
		if prev, ok := used[found]; ok {
			t.Errorf("README Go blocks %d and %d are both in %s; give each its own Example", prev, i+1, found)
		}
		used[found] = i + 1
	}
}

// goBlocks returns the lines of each fenced code block of a Markdown text
// whose info string names Go: fences of three or more backticks or tildes,
// indented or not (a block in a list item), closed by a fence of the same
// character at least as long, or by the end of the text. The fence's
// indentation is removed from the block's lines.
func goBlocks(md string) [][]string {
	var blocks [][]string
	lines := strings.Split(strings.ReplaceAll(md, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		indent, fence, info, ok := openingFence(lines[i])
		if !ok {
			continue
		}
		var block []string
		for i++; i < len(lines); i++ {
			if closesFence(lines[i], fence) {
				break
			}
			block = append(block, strings.TrimPrefix(lines[i], indent))
		}
		if lang := strings.Fields(info); len(lang) > 0 && (lang[0] == "go" || lang[0] == "golang") {
			blocks = append(blocks, block)
		}
	}
	return blocks
}

// openingFence reports whether line opens a fenced code block, and returns
// its indentation, its fence and its info string.
func openingFence(line string) (indent, fence, info string, ok bool) {
	rest := strings.TrimLeft(line, " \t")
	indent = line[:len(line)-len(rest)]
	for _, c := range []string{"`", "~"} {
		n := len(rest) - len(strings.TrimLeft(rest, c))
		if n >= 3 {
			return indent, rest[:n], strings.TrimSpace(rest[n:]), true
		}
	}
	return "", "", "", false
}

// closesFence reports whether line closes a block opened by fence.
func closesFence(line, fence string) bool {
	rest := strings.TrimSpace(line)
	n := len(rest) - len(strings.TrimLeft(rest, fence[:1]))
	return n >= len(fence) && n == len(rest)
}

// containsLines reports whether the lines of block appear, whole and in a
// row, among the lines of body.
func containsLines(body string, block []string) bool {
	lines := strings.Split(body, "\n")
	for start := 0; start+len(block) <= len(lines); start++ {
		if slices.Equal(lines[start:start+len(block)], block) {
			return true
		}
	}
	return false
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

// TestGoBlocks: the Go blocks a Markdown text holds, however its fences are
// written; other blocks are not Go.
func TestGoBlocks(t *testing.T) {
	md := "```go\nfirst()\n```\n" +
		"text\r\n```go \r\ncrlf()\r\n```\r\n" +
		"- item\n\n  ~~~golang\n  indented()\n    deeper()\n  ~~~\n" +
		"```sh\nmake test\n```\n" +
		"````go\nlonger()\n```\nstill()\n````\n" +
		"```\nno info string\n```\n" +
		"```go\nunclosed()"
	want := [][]string{
		{"first()"},
		{"crlf()"},
		{"indented()", "  deeper()"},
		{"longer()", "```", "still()"},
		{"unclosed()"},
	}
	if diff := cmp.Diff(want, goBlocks(md)); diff != "" {
		t.Errorf("goBlocks (-want +got):\n%s", diff)
	}
}

// TestContainsLines: a block matches whole lines in a row, not parts of
// lines or lines apart.
func TestContainsLines(t *testing.T) {
	body := "a := 1\nb := 2\nc := 3"
	for _, tc := range []struct {
		block []string
		want  bool
	}{
		{[]string{"a := 1", "b := 2"}, true},
		{[]string{"b := 2", "c := 3"}, true},
		{[]string{"a := 1", "c := 3"}, false},
		{[]string{"b := 2", "c := 3", "d := 4"}, false},
		{[]string{":= 1"}, false},
	} {
		if got := containsLines(body, tc.block); got != tc.want {
			t.Errorf("containsLines(%q, %q) = %v, want %v", body, tc.block, got, tc.want)
		}
	}
}
