package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// WSStats counts WebSocket sessions in a WebSocket run. A session is kept
// when it stayed open from its first message to the end of the run.
type WSStats struct {
	Sessions   int            `json:"sessions"`    // sessions asked for
	Opened     int            `json:"opened"`      // successful handshakes, reconnects included
	Kept       int            `json:"kept"`        // sessions never dropped
	Dropped    int            `json:"dropped"`     // sessions that ended during the run
	CloseCodes map[string]int `json:"close_codes"` // why they ended: a close code, or "reset", "timeout", ...
	Mismatched int64          `json:"mismatched"`  // echoes that were not the message sent (lost, duplicated, reordered)
}

// wsSessionStats is one worker's share of WSStats.
type wsSessionStats struct {
	opened, dropped int
	mismatched      int64
	codes           map[string]int
}

func (s *wsSessionStats) drop(why string) {
	s.dropped++
	if s.codes == nil {
		s.codes = map[string]int{}
	}
	s.codes[why]++
}

// wsWorker holds one session: it sends a numbered message, waits for its
// echo, waits cfg.MessageInterval, and so on. When the session ends it is
// counted as dropped (with the reason) and a new one is dialled. Each
// message is one sample: ok when the exact message came back.
func wsWorker(ctx context.Context, cfg Config, start time.Time, budget *countdown, w *worker, st *wsSessionStats) {
	var c *websocket.Conn
	defer func() {
		if c != nil {
			c.Close(websocket.StatusNormalClosure, "")
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var buf bytes.Buffer
	for seq := 0; ctx.Err() == nil && budget.take(); seq++ {
		t0 := time.Since(start)
		var err error
		status := 0
		if c == nil {
			c, status, err = wsDial(cfg)
			if err == nil {
				st.opened++
			}
		}
		if err == nil {
			buf.Reset()
			buf.WriteString("zd-load ")
			buf.WriteString(strconv.Itoa(seq))
			err = wsEcho(c, buf.Bytes(), cfg.Timeout)
			if errors.Is(err, errMismatch) {
				st.mismatched++
			}
		}
		class := ClassOK
		if err != nil {
			class = Classify(err, status)
			switch {
			case status != 0:
				class = ClassNon2xx
			case websocket.CloseStatus(err) != -1:
				class = ClassReset // the session was closed before the echo came back
			}
			if c != nil {
				st.drop(wsDropReason(err, class))
				c.CloseNow()
				c = nil
			}
		}
		w.record(sample{start: t0, end: time.Since(start), class: class}, err)
		timer.Reset(cfg.MessageInterval)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
}

var errMismatch = errors.New("echo differs from the message sent")

func wsDial(cfg Config) (*websocket.Conn, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, cfg.URL, &websocket.DialOptions{HTTPHeader: cfg.Header})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, resp.StatusCode, fmt.Errorf("websocket handshake: status %d", resp.StatusCode)
		}
		return nil, 0, fmt.Errorf("websocket dial: %w", err)
	}
	c.SetReadLimit(1 << 20)
	return c, 0, nil
}

func wsEcho(c *websocket.Conn, msg []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
		return fmt.Errorf("websocket write: %w", err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		return fmt.Errorf("websocket read: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("%w: sent %q, got %q", errMismatch, msg, got)
	}
	return nil
}

// wsDropReason names why a session ended: the peer's close code if it sent
// one, else the class of the error.
func wsDropReason(err error, class Class) string {
	if code := websocket.CloseStatus(err); code != -1 {
		return "close " + strconv.Itoa(int(code))
	}
	if errors.Is(err, errMismatch) {
		return "mismatch"
	}
	return class.String()
}

// runWS starts cfg.Connections sessions and returns their merged stats once
// they are done (after ctx ends or the budget is spent).
func runWS(ctx context.Context, cfg Config, start time.Time, budget *countdown, workers []*worker) *WSStats {
	stats := make([]wsSessionStats, len(workers))
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = &worker{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			wsWorker(ctx, cfg, start, budget, workers[i], &stats[i])
		}()
	}
	wg.Wait()
	out := &WSStats{Sessions: len(workers), CloseCodes: map[string]int{}}
	for _, s := range stats {
		out.Opened += s.opened
		out.Dropped += s.dropped
		out.Mismatched += s.mismatched
		if s.dropped == 0 && s.opened > 0 {
			out.Kept++
		}
		for k, v := range s.codes {
			out.CloseCodes[k] += v
		}
	}
	return out
}
