package collectives

import "fmt"

// Op is a reduction operator. All are commutative and associative on
// integers (Sum and Prod wrap around); on floats Sum and Prod depend on the
// order of evaluation, Min and Max do not.
//
// Float Min and Max follow Go's built-in min and max: a NaN operand gives
// NaN, and -0 is less than +0.
type Op uint8

// The reduction operators.
const (
	Sum Op = iota
	Prod
	Min
	Max
	numOps
)

var opNames = [numOps]string{"sum", "prod", "min", "max"}

// String returns the op's name (sum, prod, min, max).
func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

func (o Op) valid() bool { return o < numOps }

// Ops lists every Op.
func Ops() []Op { return []Op{Sum, Prod, Min, Max} }
