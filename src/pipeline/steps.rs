//! How a built stack names its steps, outermost first: each step's service names itself and
//! then asks the service it wraps, so the list is read off the stack that really runs (a test
//! pins the order, and that a switched-off step is absent).

/// A service that can list the steps it is made of.
pub trait Steps {
    /// Append this step's name, then the names of the steps it wraps.
    fn steps(&self, out: &mut Vec<&'static str>);
}

/// An optional step (`ServiceBuilder::option_layer`): the step when on, its inner service when off.
impl<A: Steps, B: Steps> Steps for tower::util::Either<A, B> {
    fn steps(&self, out: &mut Vec<&'static str>) {
        match self {
            tower::util::Either::Left(a) => a.steps(out),
            tower::util::Either::Right(b) => b.steps(out),
        }
    }
}

/// The names of `service`'s steps, outermost first.
pub fn list(service: &impl Steps) -> Vec<&'static str> {
    let mut out = Vec::new();
    service.steps(&mut out);
    out
}
