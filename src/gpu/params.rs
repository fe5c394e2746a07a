//! Typed uniforms: each WGSL file's `struct Params` has one `#[repr(C)]` mirror, declared
//! with `wgsl_params!` beside its launchers. The mirror knows its shader and its fields'
//! byte offsets, and a test (`tests/shaders.rs`) holds every mirror to its WGSL: the same
//! fields in the same order at the same offsets, and the same size.

/// A `#[repr(C)]` mirror of a WGSL `struct Params`.
pub trait WgslParams: bytemuck::Pod {
    /// The shader file (`shaders/<SHADER>.wgsl`) whose `struct Params` this mirrors.
    const SHADER: &'static str;
    /// Every field's name and byte offset, in order.
    fn fields() -> Vec<(&'static str, usize)>;
}

/// The uniform words of a params struct, for `DispatchDesc::params`.
pub fn words<P: bytemuck::Pod>(p: &P) -> &[u32] {
    bytemuck::cast_slice(bytemuck::bytes_of(p))
}

/// Declare the mirror of a shader's `struct Params`:
/// `wgsl_params! { pub struct ConvParams for "conv" { cin: u32, … } }`. Fields are `u32` or
/// `f32` (4 bytes each, as every `Params` here), so `#[repr(C)]` lays them out as WGSL does.
#[macro_export]
macro_rules! wgsl_params {
    ($(#[$m:meta])* $vis:vis struct $name:ident for $shader:literal {
        $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$fm])* pub $field: $ty),*
        }

        impl $crate::gpu::params::WgslParams for $name {
            const SHADER: &'static str = $shader;
            fn fields() -> Vec<(&'static str, usize)> {
                vec![$((stringify!($field), std::mem::offset_of!($name, $field))),*]
            }
        }
    };
}
