'use strict';
// Fabric's official Node Gateway client, driven against the devnet by
// tests/integration/test_conformance.py. Prints one JSON object of what it saw.
// Usage: node gateway-client.js ADDRESS WALLET CHAINCODE ASSET_ID
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const grpc = require('@grpc/grpc-js');
const { connect, signers, hash } = require('@hyperledger/fabric-gateway');

const text = (bytes) => Buffer.from(bytes).toString('utf8');

async function main() {
    const [address, wallet, chaincode, asset] = process.argv.slice(2);
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    const gateway = connect({
        client,
        identity: {
            mspId: fs.readFileSync(path.join(wallet, 'mspid'), 'utf8').trim(),
            credentials: fs.readFileSync(path.join(wallet, 'signcerts', 'cert.pem')),
        },
        signer: signers.newPrivateKeySigner(
            crypto.createPrivateKey(fs.readFileSync(path.join(wallet, 'keystore', 'priv_sk'))),
        ),
        hash: hash.sha256,
    });
    const out = {};
    try {
        const network = gateway.getNetwork('flowblock');
        const contract = network.getContract(chaincode);
        out.created = JSON.parse(text(await contract.submitTransaction('Create', asset, 'alice', '5')));
        out.read = JSON.parse(text(await contract.evaluateTransaction('Read', asset)));
        try {
            await contract.submitTransaction('Create', asset, 'alice', '5');
        } catch (error) {
            out.error = { name: error.name, details: (error.details || []).map((d) => d.message) };
        }
        const commit = await contract.submitAsync('Transfer', { arguments: [asset, 'bob'] });
        const status = await commit.getStatus();
        out.status = { code: status.code, successful: status.successful, block: Number(status.blockNumber) };
        const events = await network.getChaincodeEvents(chaincode, { startBlock: BigInt(0) });
        out.events = [];
        for await (const event of events) {
            out.events.push({ name: event.eventName, block: Number(event.blockNumber), txId: event.transactionId });
            if (out.events.length === 2) break;
        }
        events.close();
    } finally {
        gateway.close();
        client.close();
    }
    console.log(JSON.stringify(out));
}

main().catch((error) => {
    console.error(error);
    process.exit(1);
});
