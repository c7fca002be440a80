//! Interfaces through rtnetlink: look up, MTU, up, address. A small
//! current-thread runtime drives the async rtnetlink crate, so callers stay synchronous.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::{Handle, LinkUnspec};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(std::io::Error),
    #[error("no interface {0}")]
    NoSuchInterface(String),
    #[error("{action} {interface}: {message}")]
    Request {
        action: &'static str,
        interface: String,
        message: String,
    },
}

pub struct Links {
    runtime: tokio::runtime::Runtime,
    handle: Handle,
}

fn request_error(action: &'static str, interface: &str, e: rtnetlink::Error) -> NetlinkError {
    NetlinkError::Request {
        action,
        interface: interface.to_string(),
        message: e.to_string(),
    }
}

impl Links {
    pub fn connect() -> Result<Self, NetlinkError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(NetlinkError::Connect)?;
        let handle = runtime.block_on(async {
            let (connection, handle, _) =
                rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
            // Runs whenever one of our block_on calls does.
            tokio::spawn(connection);
            Ok::<_, NetlinkError>(handle)
        })?;
        Ok(Links { runtime, handle })
    }

    /// The interface's index, `None` when it does not exist.
    pub fn index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        self.runtime.block_on(async {
            let mut links = self
                .handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute();
            match links.try_next().await {
                Ok(Some(link)) => Ok(Some(link.header.index)),
                Ok(None) => Ok(None),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => {
                    Ok(None)
                }
                Err(e) => Err(request_error("look up", name, e)),
            }
        })
    }

    /// Sets the MTU, brings the link up, and puts `address` on it (idempotent: replaces).
    pub fn configure(&self, name: &str, mtu: u16, address: Ipv4Net) -> Result<(), NetlinkError> {
        let index = self
            .index(name)?
            .ok_or_else(|| NetlinkError::NoSuchInterface(name.to_string()))?;
        self.runtime.block_on(async {
            self.handle
                .link()
                .set(
                    LinkUnspec::new_with_index(index)
                        .mtu(u32::from(mtu))
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| request_error("set mtu/up on", name, e))?;
            self.handle
                .address()
                .add(index, IpAddr::V4(address.addr()), address.prefix_len())
                .replace()
                .execute()
                .await
                .map_err(|e| request_error("add address to", name, e))
        })
    }
}

/// ENODEV, as netlink reports a missing interface.
const fn libc_enodev() -> i32 {
    19
}
