module github.com/zdtools/zd/bench/tableflip-echo

go 1.26.8

require github.com/cloudflare/tableflip v1.2.3
