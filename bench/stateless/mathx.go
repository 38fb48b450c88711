package main

import "math"

func exp(x float64) float64 { return math.Exp(x) }
func ln(x float64) float64  { return math.Log(x) }
