//! Where model files live, which ones are pinned, and how the anti-spoofing models are installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::onnx::ModelError;

/// The committed models, relative to the models directory.
pub const DETECTOR_FILE: &str = "blazeface_short.onnx";
pub const MESH_FILE: &str = "facemesh_v2.onnx";
pub const BLENDSHAPES_FILE: &str = "face_blendshapes.onnx";
/// The anti-spoofing models' folder inside the models directory (git-ignored).
pub const ANTISPOOF_DIR: &str = "antispoof";

/// What every binary says when the anti-spoofing models are missing (at start-up, on `/health`, in the CLI).
pub const ANTISPOOF_MISSING: &str = "passive anti-spoofing models are not installed: no session can be judged live \
    (install them with `liveness models install --from DIR`)";

/// One pinned anti-spoofing model file.
#[derive(Debug, Clone, Copy)]
pub struct PinnedFile {
    pub name: &'static str,
    pub sha256: &'static str,
    pub url: &'static str,
    /// How much the face box is scaled for this model's crop.
    pub crop_scale: f32,
}

/// MiniFASNet V2 and V1SE, as listed in MODELS.md.
pub const ANTISPOOF_FILES: [PinnedFile; 2] = [
    PinnedFile {
        name: "2.7_80x80_MiniFASNetV2.onnx",
        sha256: "4433e871ef03f6c4c13de1757e63dcd69db14b6d7d9cff2319cb274c0f6dbecb",
        url: "https://github.com/marcos4758/Silent-Face-Anti-Spoofing-Tests/raw/1557f99a6ca5d485763cc42d42b614a72a3ede7c/resources/anti_spoof_models/2.7_80x80_MiniFASNetV2.onnx",
        crop_scale: 2.7,
    },
    PinnedFile {
        name: "4_0_0_80x80_MiniFASNetV1SE.onnx",
        sha256: "a8e67ffbaf39fa74c3b2ed673b530fcfb2f47379d0f26a52b71c2fc6473ec20f",
        url: "https://github.com/marcos4758/Silent-Face-Anti-Spoofing-Tests/raw/1557f99a6ca5d485763cc42d42b614a72a3ede7c/resources/anti_spoof_models/4_0_0_80x80_MiniFASNetV1SE.onnx",
        crop_scale: 4.0,
    },
];

/// The models directory: `LIVENESS_MODELS_DIR` if set, else `models/` in the working directory if it holds the
/// detector, else the `models/` folder of this source tree.
pub fn default_models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LIVENESS_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("models");
    if local.join(DETECTOR_FILE).exists() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
    }
}

/// Where this project's development layout keeps the anti-spoofing models: `../shared/models/antispoof` beside
/// the source tree.
pub fn shared_antispoof_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/antispoof")
}

/// Whether the anti-spoofing models are installed in `models_dir`.
pub fn antispoof_installed(models_dir: &Path) -> bool {
    ANTISPOOF_FILES.iter().all(|f| models_dir.join(ANTISPOOF_DIR).join(f.name).exists())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a file and checks it against its pinned sha256.
pub fn read_verified(path: &Path, sha256: &str) -> Result<Vec<u8>, ModelError> {
    let bytes = std::fs::read(path).map_err(|_| ModelError::Missing(path.to_owned()))?;
    let actual = sha256_hex(&bytes);
    if actual == sha256 {
        Ok(bytes)
    } else {
        Err(ModelError::Checksum { path: path.to_owned(), expected: sha256.to_owned(), actual })
    }
}

/// Why installing the anti-spoofing models failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("downloading {url} failed: {message}")]
    Download { url: String, message: String },
    #[error(transparent)]
    Checksum(#[from] ModelError),
}

/// Installs both anti-spoofing models into `models_dir/antispoof`, copied from `from` when given, otherwise
/// downloaded from their pinned URLs with `curl`. Every file is checked against its sha256 before it is written,
/// so a bad copy never lands. Returns the installed paths.
pub fn install_antispoof(models_dir: &Path, from: Option<&Path>) -> Result<Vec<PathBuf>, InstallError> {
    let target_dir = models_dir.join(ANTISPOOF_DIR);
    std::fs::create_dir_all(&target_dir).map_err(|source| InstallError::Write { path: target_dir.clone(), source })?;
    let mut installed = Vec::new();
    for file in ANTISPOOF_FILES {
        let bytes = match from {
            Some(dir) => {
                let path = dir.join(file.name);
                std::fs::read(&path).map_err(|source| InstallError::Read { path, source })?
            }
            None => download(file.url)?,
        };
        let actual = sha256_hex(&bytes);
        let target = target_dir.join(file.name);
        if actual != file.sha256 {
            return Err(ModelError::Checksum { path: target, expected: file.sha256.to_owned(), actual }.into());
        }
        std::fs::write(&target, &bytes).map_err(|source| InstallError::Write { path: target.clone(), source })?;
        installed.push(target);
    }
    Ok(installed)
}

fn download(url: &str) -> Result<Vec<u8>, InstallError> {
    let failed = |message: String| InstallError::Download { url: url.to_owned(), message };
    let output = Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location", "--max-time", "120", url])
        .output()
        .map_err(|e| failed(format!("cannot run curl: {e}")))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(failed(String::from_utf8_lossy(&output.stderr).trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_copy_is_refused_and_not_written() {
        let source = std::env::temp_dir().join(format!("liveness-bad-models-{}", std::process::id()));
        let target = source.join("target");
        std::fs::create_dir_all(&source).unwrap();
        for file in ANTISPOOF_FILES {
            std::fs::write(source.join(file.name), b"not a model").unwrap();
        }
        let error = install_antispoof(&target, Some(&source)).unwrap_err();
        assert!(matches!(error, InstallError::Checksum(ModelError::Checksum { .. })), "{error}");
        assert!(!target.join(ANTISPOOF_DIR).join(ANTISPOOF_FILES[0].name).exists());
        std::fs::remove_dir_all(&source).unwrap();
    }
}
