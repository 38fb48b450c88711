module github.com/sealring/sealring/collectives/_asm

go 1.26.0
