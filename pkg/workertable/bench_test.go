package workertable

import (
	"fmt"
	"testing"
	"time"
)

func BenchmarkEncodeDecode(b *testing.B) {
	for _, n := range []int{4, 64, 1024} {
		tab := &Table{Name: "web", Generation: 3, Health: HealthHealthy, Updated: time.Now()}
		for i := 0; i < n; i++ {
			tab.Workers = append(tab.Workers, Worker{Slot: i, Generation: 3, PID: 1000 + i, State: StateReady,
				Backend: fmt.Sprintf("unix:///run/zd/web/w%d.3.sock", i), Release: "/srv/releases/43/app", StartedAt: time.Now(), ReadyAt: time.Now()})
		}
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf, err := Encode(tab)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Decode(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
