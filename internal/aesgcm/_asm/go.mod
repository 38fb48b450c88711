module github.com/sealring/sealring/internal/aesgcm/_asm

go 1.26.0
