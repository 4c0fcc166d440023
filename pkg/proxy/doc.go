// Package proxy is the engine of zd-queue: an HTTP reverse proxy that sits in
// front of a service's workers, passes requests through to the least busy
// ready backend, and holds requests in a bounded buffer (pkg/queue) while no
// backend can take them, replaying them in priority order when one can.
//
// Clients speak HTTP/1.1, HTTP/2 (TLS with ALPN, or cleartext h2c) or HTTP/3
// (QUIC); backends are spoken to over HTTP/1.1 keep-alive pools on unix or TCP
// sockets. The backend set comes from static addresses or from the worker
// table zd-run publishes (workers.msgpack), and changes to it never close a
// client's connection.
//
// A sketch of use:
//
//	p, err := proxy.New(proxy.Config{Backends: []string{"unix:///run/zd/app/w1.1.sock"}})
//	if err != nil { ... }
//	defer p.Close()
//	go p.ServeAdmin(ctx, adminListener)
//	err = p.Serve(ctx, proxy.Listeners{TCP: []net.Listener{ln}})
//
// Operators steer it through the control socket queue.sock (see Handle) or
// the admin HTTP listener (see AdminHandler).
package proxy
