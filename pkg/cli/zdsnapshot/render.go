package zdsnapshot

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"
	"github.com/muesli/termenv"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// printSummary prints inspect's result: lipgloss tables when stdout is a
// terminal (colours unless NO_COLOR or TERM=dumb), plain aligned text
// otherwise, for pipes and scripts.
func printSummary(sio cmdkit.IO, s *summary) {
	w := sio.Stdout
	h := s.Header
	created := h.Created.Format(time.RFC3339Nano)
	fields := [][2]string{
		{"file", fmt.Sprintf("%s (%s)", s.File, sizeText(s.Bytes))},
		{"format", fmt.Sprintf("version %d, schema %d", h.Version, h.Schema)},
		{"created", created},
		{"writer", fmt.Sprintf("%s, generation %d", h.Writer, h.Generation)},
		{"codec", fmt.Sprintf("%s, %s chunks, %d chunks", codecText(h), sizeText(int64(h.ChunkSize)), s.Chunks)},
		{"cipher", sealedText(h)},
		{"records", strconv.FormatInt(s.Records, 10)},
	}
	if s.Filter != "" {
		fields = append(fields, [2]string{"matching", fmt.Sprintf("%d (%s)", s.Matched, s.Filter)})
	}
	groups := []struct {
		title string
		rows  [][2]string
	}{
		{"KIND", sortedCounts(s.ByKind, kindOrder())},
		{"PROTOCOL", sortedCounts(s.ByProtocol, nil)},
		{"STATE", sortedCounts(s.ByState, nil)},
		{"WORKER", sortedCounts(s.ByWorker, nil)},
		{"AGE", sortedCounts(s.ByAge, ageOrder())},
	}
	for i := range groups {
		groups[i].rows = capRows(groups[i].rows, maxRows)
	}
	var listRows [][]string
	for _, l := range s.First {
		age := "-"
		if l.AgeS != 0 {
			age = (time.Duration(l.AgeS * float64(time.Second))).Round(time.Millisecond).String()
		}
		worker := "-"
		if l.Worker != 0 {
			worker = strconv.Itoa(l.Worker)
		}
		listRows = append(listRows, []string{string(l.Kind), l.ID, orNone(l.Protocol), orNone(string(l.State)), worker, orNone(l.Remote), age})
	}
	listHead := []string{"KIND", "ID", "PROTOCOL", "STATE", "WORKER", "REMOTE", "AGE"}
	if !isTerminal(w) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, f := range fields {
			fmt.Fprintf(tw, "%s:\t%s\n", f[0], f[1])
		}
		for _, g := range groups {
			fmt.Fprintf(tw, "\n%s\tCOUNT\n", g.title)
			for _, r := range g.rows {
				fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
			}
		}
		if len(listRows) > 0 {
			fmt.Fprintf(tw, "\n%s\n", strings.Join(listHead, "\t"))
			for _, r := range listRows {
				fmt.Fprintf(tw, "%s\n", strings.Join(r, "\t"))
			}
		}
		tw.Flush()
		printLayoutPlain(w, s)
		return
	}
	re := lipgloss.NewRenderer(w)
	if sio.Getenv("NO_COLOR") == "" && sio.Getenv("TERM") != "dumb" {
		re.SetColorProfile(termenv.ANSI256)
	} else {
		re.SetColorProfile(termenv.Ascii)
	}
	label := re.NewStyle().Bold(true)
	head := re.NewStyle().Bold(true).Padding(0, 1)
	cell := re.NewStyle().Padding(0, 1)
	border := re.NewStyle().Foreground(lipgloss.Color("8"))
	for _, f := range fields {
		fmt.Fprintf(w, "%s %s\n", label.Render(fmt.Sprintf("%-9s", f[0]+":")), f[1])
	}
	mk := func(headers []string, rows [][]string) string {
		return table.New().Border(lipgloss.RoundedBorder()).BorderStyle(border).
			Headers(headers...).Rows(rows...).
			StyleFunc(func(row, _ int) lipgloss.Style {
				if row == table.HeaderRow {
					return head
				}
				return cell
			}).Render()
	}
	var tables []string
	for _, g := range groups {
		rows := make([][]string, len(g.rows))
		for i, r := range g.rows {
			rows[i] = []string{r[0], r[1]}
		}
		tables = append(tables, mk([]string{g.title, "COUNT"}, rows))
	}
	fmt.Fprintln(w, lipgloss.JoinHorizontal(lipgloss.Top, tables...))
	if len(listRows) > 0 {
		fmt.Fprintln(w, mk(listHead, listRows))
	}
	printLayoutPlain(w, s)
}

// maxRows bounds each count table for people (a snapshot of 5,000
// workers has 5,000 pids); --json has every entry.
const maxRows = 12

// capRows keeps the first max-1 rows and sums the rest into one.
func capRows(rows [][2]string, max int) [][2]string {
	if len(rows) <= max {
		return rows
	}
	var rest int64
	for _, r := range rows[max-1:] {
		n, _ := strconv.ParseInt(r[1], 10, 64)
		rest += n
	}
	return append(rows[:max-1:max-1], [2]string{fmt.Sprintf("(%d more)", len(rows)-max+1), strconv.FormatInt(rest, 10)})
}

func printLayoutPlain(w io.Writer, s *summary) {
	if len(s.Layout) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nREGION\tCHUNK\tOFFSET\tSIZE\n")
	for _, g := range s.Layout {
		chunk := "-"
		switch {
		case g.End:
			chunk = "end"
		case g.Chunk >= 0:
			chunk = strconv.Itoa(g.Chunk)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", g.Name, chunk, g.Offset, g.Size)
	}
	tw.Flush()
}
