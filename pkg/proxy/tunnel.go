package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// tunnel completes an HTTP/1.1 protocol switch (WebSocket, for one): it
// sends the backend's 101 to the client and then copies bytes both ways
// until either side closes. bc is the backend connection the 101 came on.
func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request, resp *http.Response, bc *bconn) attempt {
	up := bc.c
	defer up.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		p.plainError(w, http.StatusBadGateway, "this connection cannot switch protocols")
		return attempt{outcome: outcomeBadRequest}
	}
	defer conn.Close()
	if err := writeSwitch(brw.Writer, resp); err != nil {
		return attempt{outcome: outcomeClientGone}
	}
	p.m.tunnels.Inc()
	defer p.m.tunnels.Dec()

	stop := p.tunnelStop()
	var wg sync.WaitGroup
	wg.Add(2)
	done := make(chan struct{})
	go func() {
		defer wg.Done()
		io.Copy(up, brw.Reader) // bytes the server already buffered come first
		close(done)
	}()
	go func() {
		defer wg.Done()
		io.Copy(conn, bc.br) // bytes after the 101 the backend already sent come first
		conn.Close()
	}()
	select {
	case <-done:
	case <-stop:
	}
	up.Close()
	conn.Close()
	wg.Wait()
	return attempt{outcome: outcomeProxied}
}

func writeSwitch(w *bufio.Writer, resp *http.Response) error {
	fmt.Fprintf(w, "HTTP/1.1 101 Switching Protocols\r\n")
	h := resp.Header.Clone()
	h.Set("Connection", "Upgrade")
	if err := h.Write(w); err != nil {
		return err
	}
	w.WriteString("\r\n")
	return w.Flush()
}
