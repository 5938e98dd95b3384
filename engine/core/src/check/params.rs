//! Stage 2, params: every layered param has a type and a value of that type, within its bounds.

use indexmap::IndexMap;
use serde_json::Value;

use super::layers::LayeredParam;
use super::parse::ParsedFile;
use crate::diag::{Code, Diagnostics, Origin};
use crate::duration::Duration;
use crate::i18n::Message;
use crate::kind::{ParamValue, toml_to_json};
use crate::model::{ParamDecl, ParamType};
use crate::msg;

/// The params' checked values; params with problems are reported and left out.
pub(super) fn typecheck(
    params: &IndexMap<String, LayeredParam>,
    parsed: &[ParsedFile<'_>],
    diags: &mut Diagnostics,
) -> IndexMap<String, ParamValue> {
    let mut out = IndexMap::new();
    for (name, lp) in params {
        let file = &parsed[lp.value_file];
        let origin = Origin::new(file.path, Some(lp.span.clone()));
        let Some(ty) = lp.decl.ty else {
            diags.push(
                Code::BadParam,
                &origin,
                Some(file.text),
                msg!("check-param-no-type", name = name),
                Some(msg!("hint-param-type")),
            );
            continue;
        };
        let Some(value) = &lp.decl.value else {
            diags.push(
                Code::BadParam,
                &origin,
                Some(file.text),
                msg!("check-param-no-value", name = name),
                Some(msg!("hint-param-value")),
            );
            continue;
        };
        match check_value(ty, value.get_ref(), &lp.decl) {
            Ok(v) => {
                out.insert(name.clone(), ParamValue { ty, value: v });
            }
            Err(why) => diags.push(
                Code::BadParam,
                &origin,
                Some(file.text),
                msg!("check-param-value", name = name, why = why),
                None,
            ),
        }
    }
    out
}

fn check_value(ty: ParamType, v: &toml::Value, decl: &ParamDecl) -> Result<Value, Message> {
    let num = |x: f64| -> Result<(), Message> {
        if let Some(min) = decl.min.filter(|m| x < *m) {
            return Err(msg!("why-below-min", value = x, min = min));
        }
        if let Some(max) = decl.max.filter(|m| x > *m) {
            return Err(msg!("why-above-max", value = x, max = max));
        }
        Ok(())
    };
    match (ty, v) {
        (ParamType::Int, toml::Value::Integer(i)) => num(*i as f64).map(|_| Value::from(*i)),
        (ParamType::Number, toml::Value::Integer(i)) => num(*i as f64).map(|_| Value::from(*i as f64)),
        (ParamType::Number, toml::Value::Float(f)) => num(*f).map(|_| Value::from(*f)),
        (ParamType::Share, toml::Value::Float(f)) if (0.0..=1.0).contains(f) => num(*f).map(|_| Value::from(*f)),
        (ParamType::Share, toml::Value::Integer(i)) if (0..=1).contains(i) => Ok(Value::from(*i as f64)),
        (ParamType::Share, _) => Err(msg!("why-not-share", value = v.to_string())),
        (ParamType::Bool, toml::Value::Boolean(b)) => Ok(Value::Bool(*b)),
        (ParamType::String, toml::Value::String(s)) => Ok(Value::String(s.clone())),
        (ParamType::Duration, toml::Value::String(s)) => {
            Duration::parse(s).map(|_| Value::String(s.clone())).map_err(|e| e.message())
        }
        (ParamType::List, toml::Value::Array(a)) if a.iter().all(|x| x.is_str()) => Ok(toml_to_json(v)),
        _ => Err(msg!("why-not-of-type", value = v.to_string(), ty = ty.as_str())),
    }
}
