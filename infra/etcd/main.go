// Command etcd runs etcd's own server entry point. It exists because
// go.etcd.io/etcd/server/v3 carries replace directives, so `go install` of
// that module's main package fails; as a dependency of this module those
// directives are ignored and the released sibling modules are used instead.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
