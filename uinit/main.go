// Command uinit is the recovery ramdisk's flow; see README.md.
package main

import "fmt"

func main() {
	fmt.Println("lifeboat uinit: not yet implemented")
}
